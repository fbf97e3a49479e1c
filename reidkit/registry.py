"""A small named registry shared by datasets, models, losses and the like."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from reidkit.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; unknown names raise with a "did you mean" suggestion.

    Args:
        kind: what the entries are, for messages ("dataset", "model").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name``; a name can be registered once."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(obj: T) -> T:
            return self.add(name, obj)

        return decorate

    def get(self, name: str) -> T:
        """Return the entry called ``name``.

        Raises:
            UnknownNameError: with the closest known name, if any, in the message.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                self.unknown_message(name), hint=f"known {self.kind}s: {', '.join(self.names())}"
            ) from None

    def unknown_message(self, name: str) -> str:
        """The one-line message for an unknown ``name``, with a suggestion when one is close."""
        close = difflib.get_close_matches(name.lower(), self.names(), n=1, cutoff=0.6)
        suggestion = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown {self.kind} '{name}'{suggestion}"

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names in registration order, optionally filtered by a glob pattern."""
        names = list(self._entries)
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return names

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
