"""SIGINT and SIGTERM: both stop a command as an interrupt (exit 130), wherever they land.

Installed first thing by the ``reidkit`` entry point, before the heavier imports, so that a
signal during start-up is an interrupt too. The signal is remembered: code that turns the
KeyboardInterrupt into an error of its own (a C extension interrupted while it is imported
says "ImportError: initialization failed") was interrupted all the same, and must not end
as a crash to report.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)
_received: list[int] = []  # the stop signals received since the command started
_finishing: list[bool] = []  # inside finishing(): a stop signal is too late to stop anything
_holding: list[bool] = []  # inside held(): a stop signal waits until it ends

# Packages whose import runs native initialisation that an exception must not cross: a
# KeyboardInterrupt raised inside torch's import was seen to abort the process (exit -6),
# to kill it by SIGINT after its error line (-2), or to be swallowed (exit 0).
HELD_IMPORTS = frozenset(
    ("torch", "torchvision", "timm", "numpy", "scipy", "sklearn", "h5py", "PIL", "onnx",
     "onnxruntime", "openvino", "matplotlib", "cv2")
)  # fmt: skip


def _on_stop_signal(signum: int, frame: object) -> None:
    _received.append(signum)
    if not _finishing and not _holding:
        raise KeyboardInterrupt


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Work no exception may interrupt halfway (a native library's initialisation): a stop
    signal that arrives meanwhile is acted on as soon as it ends."""
    before = len(_received)
    _holding.append(True)
    try:
        yield
    finally:
        _holding.pop()
    if len(_received) > before and not _holding and not _finishing:
        raise KeyboardInterrupt


class _HeldLoader:
    """A package's own loader, its module run under :func:`held`; all else (resources,
    source) is the loader's."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __getattr__(self, name: str):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with held():
            self.loader.exec_module(module)


class _HeldImports:
    """A finder on ``sys.meta_path``: imports the packages of HELD_IMPORTS (with all they
    import) under :func:`held`."""

    def find_spec(self, name, path=None, target=None):
        if name not in HELD_IMPORTS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _HeldLoader(spec.loader)
        return spec


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
    if not any(isinstance(finder, _HeldImports) for finder in sys.meta_path):
        sys.meta_path.insert(0, _HeldImports())


def unanswered() -> bool:
    """Whether a stop signal came that nothing acted on: its KeyboardInterrupt was swallowed
    on the way (inside a finaliser, say), and the command went on as if not asked to stop."""
    return bool(_received)


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
