"""How library loops report progress without printing: a callback the CLI supplies."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(done, total)`` from long loops; the CLI renders it."""


def no_progress(done: int, total: int) -> None:
    """The default: report nothing."""
