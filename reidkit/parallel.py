"""Run a function over many small tasks in worker processes, in order of completion.

Used for CPU-bound work that is independent per item (rendering synthetic images,
drawing ranked lists). Workers ignore Ctrl-C and leave stopping to the parent, which
terminates them on Ctrl-C or SIGTERM, so an interrupted run never leaves workers behind.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def worker_count(workers: int | None) -> int:
    """``workers``, or when it is 0 or None the command's thread count (one per core when
    no other reidkit command runs: see reidkit.threads)."""
    from reidkit.threads import thread_count

    return max(1, workers or thread_count())


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _init_pool_worker(initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if initializer is not None:
        initializer(*initargs)


def imap_workers(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    workers: int | None,
    *,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
    chunksize: int = 8,
) -> Iterator[R]:
    """Yield ``fn(task)`` for every task, in completion order.

    With one worker everything runs in this process (no pickling, easy to debug);
    otherwise in forked worker processes, terminated when the generator is closed.
    """
    workers = worker_count(workers)
    if workers == 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, tasks)
        return
    import multiprocessing

    # A stop signal arriving while the pool forks would be raised inside a fork hook,
    # where Python swallows it; held back until the workers exist, it is raised at the
    # unblock below instead, and the pool is terminated like on any other stop.
    pool = None
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pool = multiprocessing.get_context("fork").Pool(
            workers, _init_pool_worker, (initializer, initargs)
        )
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        yield from pool.imap_unordered(fn, tasks, chunksize=chunksize)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if pool is not None:
            pool.terminate()
            pool.join()
