from __future__ import annotations

import os
import stat

import pytest

from reidkit.errors import LockedError
from reidkit.fileio import atomic_open, file_lock, write_text_atomic


def test_atomic_write_replaces_and_uses_the_umask(tmp_path):
    target = tmp_path / "out" / "a.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_failed_write_leaves_old_content_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("half of the new")
        raise RuntimeError("crash in the middle")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_lock_is_exclusive_and_released(tmp_path):
    target = tmp_path / "thing"
    with file_lock(target):
        with pytest.raises(LockedError) as err, file_lock(target):
            pass
        assert err.value.exit_code == 75 and str(os.getpid()) in err.value.message
    with file_lock(target):  # released: can be taken again
        pass
