import pytest

from recsys.files import atomic_path, atomic_write_text


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
