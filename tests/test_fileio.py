from __future__ import annotations

import os
import stat
import threading
import time

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


def test_no_lock_file_is_left_beside_the_output(tmp_path):
    """Lock files used to stay (.vis.lock, .lists.lock, ...) and show up in `git status`."""
    target = tmp_path / "out.h5"
    with file_lock(target):
        assert (tmp_path / ".out.h5.lock").read_text() == str(os.getpid())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), file_lock(target):
        raise RuntimeError("failed")
    assert list(tmp_path.iterdir()) == []


def test_a_waiting_writer_takes_over_when_the_holder_removes_the_lock_file(tmp_path):
    """The holder removes the lock file on release; a writer that was waiting on it must
    then hold the lock of the file now at that path, so that a third one is refused."""
    target = tmp_path / "out"
    events = []

    def waiter():
        with file_lock(target, wait=True):
            events.append("waiter holds")
            with pytest.raises(LockedError), file_lock(target):  # a third writer is refused
                pass
            events.append("third refused")
            assert (tmp_path / ".out.lock").read_text() == str(os.getpid())

    with file_lock(target):
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.3)
        assert events == []  # still waiting
    thread.join(10)
    assert events == ["waiter holds", "third refused"]
    assert list(tmp_path.iterdir()) == []
