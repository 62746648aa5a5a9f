"""A real server for the tests that need one: ``python -m recsys.serve`` in its own process,
on a free loopback port."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

STARTUP_SECONDS = 120  # imports and the bundle's checksums, on a busy 2-core machine


def start_server(bundle: Path, *options: str) -> tuple[subprocess.Popen, str, list[str]]:
    """``python -m recsys.serve --bundle BUNDLE --port 0``; the process, the URL its first
    line names (``AssertionError`` with what it printed if it says none in time) and its
    output lines. The output is read on until it ends, so a full pipe never blocks it."""
    process = subprocess.Popen([sys.executable, "-m", "recsys.serve", "--bundle", str(bundle),
                                "--port", "0", *options], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    first = threading.Event()

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            first.set()
        first.set()  # it ended

    threading.Thread(target=read, daemon=True).start()
    first.wait(STARTUP_SECONDS)
    found = re.search(r"at (http://127\.0\.0\.1:\d+)/", lines[0]) if lines else None
    if found is None:
        process.kill()
        raise AssertionError(f"the server printed no URL in {STARTUP_SECONDS} s: {lines!r}")
    return process, found[1], lines


def stop_server(process: subprocess.Popen) -> int:
    """SIGTERM, as a service manager stops it; its exit status."""
    process.terminate()
    try:
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.fixture(scope="session")
def served(new_user_bundles) -> Iterator[str]:
    """The URL of a real server (uvicorn) over the ALS bundle, shared by the tests that only
    read from it."""
    process, url, _ = start_server(new_user_bundles["als"])
    yield url
    stop_server(process)
