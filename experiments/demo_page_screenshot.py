"""A screenshot of the served page after liking a few films (the README's figure).

    python -m recsys.serve &                      # the bundle of `python -m recsys.export`
    python experiments/demo_page_screenshot.py [--url http://127.0.0.1:8000]
        [--like Fargo --like "Toy Story" --like "Heat (1995)"] [--out reports/figures/demo_page.png]

Drives Debian's ``chromium`` (headless, through Playwright, by its executable path): for each
``--like``, types it into the search box and likes the first film found, waits for the list to
be served by fold-in, then saves the page. The file is written atomically.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from recsys.cli import ArgumentParser, one_line_errors
from recsys.files import atomic_path


def capture(url: str, likes: list[str], out: Path) -> list[str]:
    """Like ``likes`` on the page at ``url``, save a screenshot to ``out``; the titles shown."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                             headless=True, args=["--no-sandbox"])  # fmt: skip
        page = browser.new_page(viewport={"width": 1280, "height": 980})
        page.goto(url)
        expect(page.locator("#route")).to_have_text("popular")
        for text in likes:
            page.fill("#search", text)
            found = page.locator("#results li", has_text=text.split(" (")[0]).first
            found.locator("button.like").click()
        expect(page.locator("#route")).to_have_text("fold-in")
        expect(page.locator("#liked .chip")).to_have_count(len(likes))
        page.fill("#search", likes[-1])  # leave the last search on show
        expect(page.locator("#results li").first).to_be_visible()
        with atomic_path(out) as tmp:
            page.screenshot(path=str(tmp), type="png", full_page=True)
        titles = page.locator("#recommendations .title").all_inner_texts()
        browser.close()
    return titles


def main() -> None:
    parser = ArgumentParser("experiments/demo_page_screenshot.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000/")
    parser.add_argument("--like", action="append", default=None,
                        help="a film to like, as typed in the search box (repeat)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("reports/figures/demo_page.png"))
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        sys.exit("error: no chromium on PATH: apt-get install -y chromium")
    titles = capture(args.url, args.like or ["Fargo", "Toy Story", "Heat (1995)"], args.out)
    print(f"wrote {args.out}: recommended {'; '.join(titles)}")


if __name__ == "__main__":
    with one_line_errors():
        main()
