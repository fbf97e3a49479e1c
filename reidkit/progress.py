"""How library loops report progress without printing: a callback the CLI supplies."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[..., None]
"""Called as ``progress(done, total)`` or ``progress(done, total, note)`` from long loops
(the note, such as the current loss, is shown next to the bar); the CLI renders it."""


def no_progress(done: int, total: int, note: str = "") -> None:
    """The default: report nothing."""
