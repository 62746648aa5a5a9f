"""The page in a real headless Chromium (Debian's ``chromium``, driven by Playwright through its
executable path) against a real server: search, like, and the list changes. About 2.5 s on 2
busy cores besides the shared bundles and server (1.5 s of it starting the browser): not
``slow``."""

import re
import shutil

import pytest

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed: pip install -e '.[dev]'")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="no chromium on PATH: apt-get install -y chromium")
expect = sync_api.expect


@pytest.fixture(scope="module")
def page():
    """A fresh tab of a headless Chromium (no sandbox: tests may run as root)."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])  # fmt: skip
        yield browser.new_page(viewport={"width": 1280, "height": 900})
        browser.close()


def shown(page) -> list[str]:
    return page.locator("#recommendations li").evaluate_all(
        "items => items.map(item => item.dataset.movieId)")


def test_search_fargo_like_it_and_a_new_list_appears(page, served, tmp_path):
    page.goto(f"{served}/")
    expect(page.locator("#route")).to_have_text("popular")  # nothing liked yet
    expect(page.locator("#model")).to_contain_text("als (run ")
    expect(page.locator("#about")).to_be_hidden()  # no user tower in an ALS bundle
    expect(page.locator("#recommendations li")).to_have_count(10)
    before = shown(page)
    page.fill("#search", "Fargo")
    fargo = page.locator("#results li", has_text="Fargo")
    expect(fargo).to_have_count(1)
    expect(fargo.locator(".meta")).to_have_text("1996 · Action, Drama")
    fargo.locator("button.like").click()
    expect(page.locator("#route")).to_have_text("fold-in")
    expect(page.locator("#liked .chip")).to_have_count(1)
    expect(fargo.locator("button.like")).to_be_disabled()
    expect(page.locator("#recommendations li")).to_have_count(10)
    after = shown(page)
    assert after != before and "100" not in after
    films = page.locator("#recommendations li")
    assert all(re.fullmatch(r"\d{4} · [A-Za-z-]+(, [A-Za-z-]+)*", meta)
               for meta in films.locator(".meta").all_inner_texts())  # fmt: skip
    reasons = films.locator(".why").all_inner_texts()
    assert reasons and set(reasons) == {"because you liked Fargo (1996)"}
    assert page.locator("#error").inner_text() == ""
    page.screenshot(path=tmp_path / "page.png")
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
