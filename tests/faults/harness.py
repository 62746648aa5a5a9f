"""What every fault-injection case asserts: the command exits non-zero with one ``error:`` line
and no traceback, and every file that existed before is byte for byte the same.

``failing_cli`` runs an entry point in this process (a second each is too slow for dozens of
cases); ``failing_subprocess`` runs it as a user would, for what needs a real process
(signals, Hydra's own error handling).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def snapshot(*roots: Path) -> dict[str, str]:
    """``{path: SHA-256}`` of every file under ``roots`` (a missing root counts as empty)."""
    files = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")) if Path(root).exists() else []:
            if path.is_file():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def one_error_line(stderr: str) -> str:
    """The single ``error:`` line of ``stderr``; fails on a traceback or several lines."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def failing_cli(capsys, main: Callable[[list[str]], object], argv: list[str],
                protect: tuple[Path, ...] = ()) -> str:  # fmt: skip
    """Call ``main(argv)``; assert it fails (returns or exits with a non-zero code) with one
    ``error:`` line and leaves the files under ``protect`` intact; return the line."""
    before = snapshot(*protect)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    assert code not in (0, None)
    line = one_error_line(capsys.readouterr().err)
    assert_intact(before, snapshot(*protect))
    return line


def assert_intact(before: dict[str, str], after: dict[str, str]) -> None:
    """Every file of ``before`` is still there, unchanged (new files may have appeared)."""
    changed = [path for path, digest in before.items() if after.get(path) != digest]
    assert not changed, f"files that existed before were changed or removed: {changed}"


def failing_subprocess(module: str, *argv: str, cwd: Path, protect: tuple[Path, ...] = (),
                       env: dict[str, str] | None = None, timeout: float = 120):  # fmt: skip
    """``python -m module argv...`` in ``cwd``: non-zero exit, one ``error:`` line, the files
    under ``protect`` intact. Returns the line and the finished process."""
    before = snapshot(*protect)
    command = [sys.executable, "-m", module, *argv]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})  # fmt: skip
    assert result.returncode != 0, result.stdout + result.stderr
    line = one_error_line(result.stderr)
    assert_intact(before, snapshot(*protect))
    return line, result
