"""Atomic file writes (write to a temporary file beside the target, then rename) and checksums.

A crash or an interrupt at any point leaves either the old file or the new one, never a file
that looks complete but is not. A process killed mid-write leaves its temporary behind; the name
says whose it is (``.<target>.tmp-<host>-<pid>-<random>``), and the next atomic write in that
folder removes the temporaries of processes of this host that are gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# ".<target>.tmp-<host>-<pid>-<random>": the host may hold "-", the random part (tempfile's) not
TEMPORARY_NAME = re.compile(r"^\..+\.tmp-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+$")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, directory: bool = False,
                backup: str | os.PathLike | None = None) -> Iterator[Path]:  # fmt: skip
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    Parameters
    ----------
    target
        Final path. Its parent folder is created if needed.
    directory
        Yield an (empty, created) temporary directory instead of a file path. An existing
        ``target`` directory is replaced only after the new one is complete.
    backup
        With ``directory``: move an existing ``target`` here instead of deleting it.

    On an exception the temporary path is removed and ``target`` is left as it was. Before the
    temporary path is made, stale temporaries in the folder are removed
    (``remove_stale_temporaries``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent)
    prefix = f".{target.name}.tmp-{_host()}-{os.getpid()}-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    os.chmod(tmp, (0o777 if directory else 0o666) & ~_umask())  # mkstemp/mkdtemp use 0o600/0o700
    try:
        yield tmp
        if directory:
            _replace_directory(tmp, target, None if backup is None else Path(backup))
        else:
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed atomic writes left in ``folder``; return them.

    Only names of our pattern (``.<target>.tmp-<host>-<pid>-<random>``) whose process ran on
    this host and no longer exists are removed; a live process's temporary (this one's
    included), another host's, and anything else are kept. Best effort: what cannot be listed
    or removed is left alone.

    Parameters
    ----------
    folder
        The folder to clean (not recursively).

    Returns
    -------
    list of Path
        The temporaries removed, each also logged.
    """
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    removed = []
    for path in entries:
        match = TEMPORARY_NAME.match(path.name)
        if match is None or path.is_symlink() or match["host"] != _host():
            continue
        pid = int(match["pid"])
        if process_exists(pid):
            continue
        _remove(path)
        if not os.path.lexists(path):
            removed.append(path)
            log.info("removed %s, left by process %d of %s, which is gone", path, pid, _host())
    return removed


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (another user's counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # alive under another user; or not a pid at all
        return True
    return True


def _replace_directory(new: Path, target: Path, backup: Path | None) -> None:
    # A directory cannot be os.replace'd onto a non-empty one: move the old one aside first,
    # so that at every instant either the old or the new complete directory is at ``target``.
    if not target.exists():
        os.replace(new, target)
        return
    if backup is None:
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        old.rmdir()
    else:
        old = backup
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    if backup is None:
        _remove(old)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
