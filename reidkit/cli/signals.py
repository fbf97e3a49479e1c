"""SIGINT and SIGTERM: both stop a command as an interrupt (exit 130), wherever they land.

Installed first thing by the ``reidkit`` entry point, before the heavier imports, so that a
signal during start-up is an interrupt too. The signal is remembered: code that turns the
KeyboardInterrupt into an error of its own (a C extension interrupted while it is imported
says "ImportError: initialization failed") was interrupted all the same, and must not end
as a crash to report.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator

log = logging.getLogger(__name__)
_received: list[int] = []  # the stop signals received since the command started
_finishing: list[bool] = []  # inside finishing(): a stop signal is too late to stop anything


def _on_stop_signal(signum: int, frame: object) -> None:
    _received.append(signum)
    if not _finishing:
        raise KeyboardInterrupt


@contextlib.contextmanager
def finishing() -> Iterator[None]:
    """The last steps of a command whose work is done (publishing its output and reporting
    it): a stop signal that arrives now does not turn a complete output into an "interrupted"
    exit; the command ends as it succeeded, saying the signal came too late."""
    before = len(_received)
    _finishing.append(True)
    try:
        yield
    finally:
        _finishing.pop()
        late = len(_received) > before
        del _received[before:]  # too late to stop anything: not an interruption either
    if late:
        log.warning("a stop signal came after the work was done: finished anyway")


def install() -> None:
    """Our handler for SIGINT and SIGTERM (kill, systemd, cron timeouts), unless the
    embedding program has set its own; forget signals of an earlier command."""
    _received.clear()
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    for sig, default in defaults.items():
        if signal.getsignal(sig) in (default, _on_stop_signal):
            signal.signal(sig, _on_stop_signal)


def was_interrupted(exc: BaseException | None) -> bool:
    """Whether ``exc`` ended the command because it was asked to stop: a stop signal came,
    or a KeyboardInterrupt is among its causes."""
    if _received:
        return True
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
