"""The run directory, apart from the weights: the lock, the environment record, the log
file and the progress note beside last.pt.

    runs/<name>/config.yaml   train.log   metrics.csv   env.json   tb/
                weights/last.pt   last.json   best.pt
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.fileio import file_lock, write_text_atomic

LAST = "last.pt"


def run_lock(run: Path):
    """The run directory's lock, held by the first process only (torchrun starts several)."""
    return file_lock(run) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()


def started_from(pretrained: dict[str, Any] | None) -> str:
    """The comment config.yaml keeps of the weights a run started from."""
    if not pretrained:
        return "initial weights: none (trained from scratch)"
    p = pretrained
    return f"initial weights: {p['file']} ({p['source']}, sha256 {p['sha256']})"


def environment(device: str) -> dict[str, Any]:
    """What env.json records: versions, device, platform and the git commit of reidkit."""
    import subprocess

    import torch

    from reidkit import __version__

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "reidkit": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": device,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "git_commit": commit,
    }


@contextlib.contextmanager
def log_to_file(run: Path, enabled: bool = True):
    """reidkit's log records also go to RUN/train.log while the block runs."""
    if not enabled:
        yield
        return
    handler = logging.FileHandler(run / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("reidkit").addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger("reidkit").removeHandler(handler)
        handler.close()


def write_progress_note(
    last: Path, epoch: int, step: int, batch_in_epoch: int, best: float, pending: bool
):
    """``last.json`` beside ``last.pt``: where the run stands, readable without torch; it
    names the size and mtime of the checkpoint it describes, so a stale note is ignored."""
    stat = last.stat()
    note = {
        "epoch": epoch,
        "step": step,
        "batch_in_epoch": batch_in_epoch,
        "best": best,
        "pending": pending,
        "checkpoint": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
    }
    write_text_atomic(last.with_suffix(".json"), json.dumps(note) + "\n")


def read_progress_note(last: Path) -> dict[str, Any] | None:
    """The note of :func:`write_progress_note` if it describes ``last`` as it is now."""
    try:
        note = json.loads(last.with_suffix(".json").read_text(encoding="utf-8"))
        stat = last.stat()
        if note["checkpoint"] == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
            return note
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None
