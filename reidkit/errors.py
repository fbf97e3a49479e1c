"""The errors reidkit raises, each carrying the exit code the CLI turns it into.

    ReidkitError (1)            runtime failure: I/O, corrupt data, diverged training
    ├── DataError (1)           an input file exists but its content is wrong
    ├── UsageError (2)          bad option, unknown name, missing input, bad config
    │   ├── UnknownNameError    a registry lookup failed; the message suggests a name
    │   └── MissingInputError   an input file or folder does not exist
    ├── LockedError (75)        the output is locked by another running reidkit process
    └── Interrupted (130)       SIGINT or SIGTERM

Every error has a one-line message and an optional one-line ``hint``.
"""

from __future__ import annotations


class ReidkitError(Exception):
    """Base class of every error reidkit raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class DataError(ReidkitError):
    """An input exists but its content is unusable (corrupt file, bad values)."""


class UsageError(ReidkitError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A name is not in a registry."""


class MissingInputError(UsageError):
    """An input file or folder does not exist."""


class LockedError(ReidkitError):
    """Another running reidkit process holds the lock on this output."""

    exit_code = 75


class Interrupted(ReidkitError):
    """The process was asked to stop (SIGINT or SIGTERM)."""

    exit_code = 130
