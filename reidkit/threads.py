"""How many CPU threads a command uses: torch's, BLAS's (numpy, scipy) and the number of
worker processes that decode or draw images.

``--threads N`` (or ``REIDKIT_THREADS``) says it; a user's ``OMP_NUM_THREADS`` is honoured
next. Otherwise the cores this process may use are shared among the reidkit commands
running on the machine at that moment: each heavy command holds a lock on a file of its own
in a per-user folder, and counts the files still locked. Two demos on 2 cores get one thread
each instead of two each: OpenMP threads that wait by spinning, on a machine with more
threads than cores, burn most of the CPU time on waiting (a demo took 49 minutes instead of
141 s beside another one). Spinning itself is kept: alone on its cores a passive wait
(``OMP_WAIT_POLICY=PASSIVE``) made training a third slower here.

The settings are environment variables read when torch and numpy load, so the CLI applies
them before any heavy import; torch's count is also set directly when it is loaded already.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import tempfile
from pathlib import Path

from reidkit.errors import UsageError

log = logging.getLogger(__name__)

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# the count, whether it was chosen here, the lock, what we put in the environment
_state = {"threads": 0, "auto": False, "fd": None, "set": ""}


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def running_folder() -> Path:
    """Where running commands register (one locked file each), per user."""
    return Path(tempfile.gettempdir()) / f"reidkit-{os.getuid()}" / "running"


def _register() -> int:
    """Hold a lock on this process's file and return how many registered processes are
    running now (this one included); files of ended processes are removed."""
    folder = running_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if _state["fd"] is None:
            fd = os.open(folder / str(os.getpid()), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _state["fd"] = fd  # held until the process ends, however it ends
        running = 0
        for entry in folder.iterdir():
            with contextlib.suppress(OSError):
                fd = os.open(entry, os.O_RDWR)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    running += 1  # held: a running command (this one too)
                else:
                    entry.unlink()  # its process has ended
                finally:
                    os.close(fd)
        return max(1, running)
    except OSError as exc:  # an unwritable temporary folder: share nothing, say why
        log.debug("cannot count running reidkit commands (%s)", exc)
        return 1


def configure(threads: int | None = None) -> int:
    """Decide this command's thread count and apply it; returns it.

    Args:
        threads: the user's ``--threads``, at most the usable cores (None:
            ``OMP_NUM_THREADS`` if set, except torchrun's default of 1, else this machine's
            cores shared among the running reidkit commands, torchrun's processes
            included).

    Raises:
        UsageError: a count below 1.
    """
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    asked = f"--threads {threads}"
    users = os.environ.get("OMP_NUM_THREADS", "")
    if users == "1" and "LOCAL_WORLD_SIZE" in os.environ:
        # torchrun's own default for a user who set nothing: one thread per process would
        # leave a process's share of the cores idle (the shares are counted below)
        users = ""
    if threads is None and users.isdigit() and users != _state["set"]:  # not ours, earlier
        threads, asked = max(1, int(users)), f"OMP_NUM_THREADS={users}"
    cores = usable_cores()
    if threads is not None and threads > cores:
        # more threads (and worker processes) than cores only adds memory and waiting
        log.warning("%s: this process may use %d cores; using %d", asked, cores, cores)
        threads = cores
    _state["auto"] = threads is None
    if threads is None:
        threads = _share()
    _apply(threads)
    return threads


def _share() -> int:
    """This command's share of the cores now."""
    running = _register()
    threads = max(1, usable_cores() // running)
    if running > 1 and threads != _state["threads"]:
        log.info(
            "%d reidkit commands are running: using %d of %d cores (--threads to choose)",
            running,
            threads,
            usable_cores(),
        )
    return threads


def rebalance() -> None:
    """Take this command's share of the cores again (when the count was not given): a
    long command started alone gives cores back to commands started after it, and takes
    them again when they end. Called between epochs and between chunks of work; torch's
    thread count changes at once (BLAS keeps the count it was loaded with)."""
    if _state["auto"]:
        threads = _share()
        if threads != _state["threads"]:
            _apply(threads)


def _apply(threads: int) -> None:
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    _state["set"] = str(threads)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
    _state["threads"] = threads


def thread_count() -> int:
    """The count :func:`configure` chose, else the usable cores (library use)."""
    return _state["threads"] or usable_cores()
