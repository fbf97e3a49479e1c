"""Numbers read from ``REIDKIT_*`` environment variables: a value that is not one is a usage
error naming the variable, never a silent default."""

from __future__ import annotations

import math
import os

from reidkit.errors import UsageError


def env_number(name: str, default: float, kind: type = float) -> float:
    """The non-negative number in variable ``name`` (``default`` when it is unset).

    Raises:
        UsageError: not a number of ``kind``, or negative.
    """
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if value < 0 or not math.isfinite(value):
        raise UsageError(f"{name}={text!r} must be a non-negative number")
    return value
