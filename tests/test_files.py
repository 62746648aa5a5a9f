import logging
import os
import subprocess

import pytest

from recsys.files import (
    TEMPORARY_NAME,
    _host,
    atomic_path,
    atomic_write_text,
    remove_stale_temporaries,
)


def test_atomic_write_replaces_file(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_interrupted_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_directory_is_replaced_only_when_complete(tmp_path):
    target = tmp_path / "bundle"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "x").write_text("1")
    with pytest.raises(RuntimeError), atomic_path(target, directory=True) as tmp:
        (tmp / "x").write_text("2")
        raise RuntimeError("crash")
    assert (target / "x").read_text() == "1"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "y").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["y"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def dead_pid() -> int:
    """The pid of a child that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_temporary_names_say_which_process_of_which_host_made_them(tmp_path):
    with atomic_path(tmp_path / "bundle", directory=True) as tmp:
        match = TEMPORARY_NAME.match(tmp.name)
        assert match and int(match["pid"]) == os.getpid()
        assert match["host"] == _host()


def test_stale_temporaries_of_dead_processes_are_removed_when_the_next_write_starts(tmp_path):
    stale_dir = tmp_path / f".bundle.tmp-{_host()}-{dead_pid()}-abc_1234"
    stale_file = tmp_path / f".a.txt.tmp-{_host()}-{dead_pid()}-zz9yy8xx"
    live = tmp_path / f".bundle.tmp-{_host()}-{os.getpid()}-k2j3h4g5"  # ours: a write under way
    other_host = tmp_path / f".bundle.tmp-elsewhere.example-{dead_pid()}-abcdefgh"
    unrelated = [tmp_path / ".something", tmp_path / ".bundle.tmp-abcdefgh",  # the old naming
                 tmp_path / f"bundle.tmp-{_host()}-{dead_pid()}-abcdefgh"]  # fmt: skip
    for folder in [stale_dir, live, other_host, *unrelated]:
        (folder / "part").mkdir(parents=True)
    stale_file.write_text("half")
    atomic_write_text(tmp_path / "a.txt", "new")
    assert not stale_dir.exists() and not stale_file.exists()
    assert all(p.exists() for p in [live, other_host, *unrelated])
    assert (tmp_path / "a.txt").read_text() == "new"


def test_removal_is_logged_and_returned(tmp_path, caplog):
    stale = tmp_path / f".x.tmp-{_host()}-{dead_pid()}-abcdefgh"
    stale.mkdir()
    with caplog.at_level(logging.INFO, logger="recsys.files"):
        assert remove_stale_temporaries(tmp_path) == [stale]
    assert str(stale) in caplog.text and "gone" in caplog.text


def test_backup_keeps_the_replaced_directory(tmp_path):
    target = tmp_path / "bundle"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "x").write_text("1")
    with atomic_path(target, directory=True, backup=tmp_path / "bundle.old") as tmp:
        (tmp / "x").write_text("2")
    assert (target / "x").read_text() == "2" and (tmp_path / "bundle.old" / "x").read_text() == "1"
