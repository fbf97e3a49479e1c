"""Where command output goes: results on stdout (a table or a line, or one JSON document
with --json); logs, warnings and progress on stderr.

``-q`` keeps stderr for errors only; ``-v`` adds debug logging. On a terminal, progress is a
rich bar; otherwise (cron, pipes, CI) it is a plain log line every few seconds.
NO_COLOR is honoured by rich itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from reidkit.progress import ProgressFn

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(message)s"


@dataclass
class _State:
    quiet: bool = False
    verbose: bool = False


STATE = _State()


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def console():
    """The rich console on stderr (created on first use, after logging is set up)."""
    from rich.console import Console

    global _CONSOLE
    if _CONSOLE is None or _CONSOLE.file is not sys.stderr:
        # in logs (cron, pipes) a message stays on one line, whatever its length
        _CONSOLE = Console(stderr=True, highlight=False, soft_wrap=not stderr_is_terminal())
    return _CONSOLE


_CONSOLE = None


def is_main_process() -> bool:
    """False in the second and later processes torchrun starts: only the first one talks."""
    return os.environ.get("RANK", "0") == "0"


def reset() -> None:
    """Forget the verbosity of an earlier command (several runs in one process)."""
    STATE.quiet = STATE.verbose = False


def setup(quiet: bool = False, verbose: bool = False) -> None:
    """Set verbosity for this command (flags given before or after the command add up)."""
    STATE.quiet = STATE.quiet or quiet
    STATE.verbose = STATE.verbose or verbose
    level = logging.ERROR if STATE.quiet else logging.DEBUG if STATE.verbose else logging.INFO
    logger = logging.getLogger("reidkit")
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    if stderr_is_terminal():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=console(), show_time=False, show_path=False, markup=False
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT, "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    log_interval()  # a bad REIDKIT_PROGRESS_INTERVAL stops the command before any work


def emit_json(document: Any) -> None:
    """Write the command's one JSON document to stdout."""
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def render(document: Any, as_json: bool, human: Callable[[Any], Any]) -> None:
    """Show a command's result on stdout: the JSON document, or ``human(document)`` (a
    table, a line) for people, so that ``reidkit models list | grep resnet`` works.
    Logs, warnings and progress stay on stderr; ``-q`` silences only those."""
    if as_json:
        emit_json(document)
    else:
        result_console().print(human(document))
        sys.stdout.flush()


def result_console():
    """The rich console on stdout. Into a pipe or a file a line is never wrapped (a table
    stays one row per line) and no colour is written (unless FORCE_COLOR says so)."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(file=sys.stdout, highlight=False, width=10_000)


def log_interval() -> float:
    """Seconds between plain progress lines (10); REIDKIT_PROGRESS_INTERVAL overrides.

    Raises:
        UsageError: a value that is not a non-negative number.
    """
    from reidkit.envvars import env_number

    return env_number("REIDKIT_PROGRESS_INTERVAL", 10.0)


@contextmanager
def progress(description: str) -> Iterator[ProgressFn]:
    """A ``progress(done, total)`` callback that renders as a bar or as log lines."""
    if STATE.quiet:
        yield lambda done, total, note="": None
    elif stderr_is_terminal():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console()) as bar:
            task = bar.add_task(description, total=None)

            def update(done: int, total: int, note: str = "") -> None:
                text = f"{description} {note}" if note else description
                bar.update(task, completed=done, total=total, description=text)

            yield update
    else:
        yield _LogLines(description, log_interval())


@contextmanager
def progress_factory() -> Iterator[Callable[[str], ProgressFn]]:
    """Makes one progress callback per task (a bar each, or log lines), closed at the end."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield lambda description: stack.enter_context(progress(description))


class _LogLines:
    """Progress as a log line at a steady interval, and one at the end."""

    def __init__(self, description: str, interval: float) -> None:
        self.description = description
        self.interval = interval
        self.start = self.last = time.monotonic()
        self.log = logging.getLogger("reidkit.progress")

    def __call__(self, done: int, total: int, note: str = "") -> None:
        now = time.monotonic()
        if done < total and now - self.last < self.interval:
            return
        if done == 0 and total:
            return
        self.last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        pct = 100.0 * done / total if total else 100.0
        self.log.info(
            "%s%s: %d/%d (%.0f%%) %.1f/s, %.0fs elapsed, eta %.0fs",
            self.description,
            f" {note}" if note else "",
            done,
            total,
            pct,
            rate,
            elapsed,
            eta,
        )
