"""Checkpoints, format "reidkit.checkpoint/1": everything needed to rebuild the model, and
(for training) to continue exactly where it stopped.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so it loads with
``torch.load(weights_only=True)``:

    format       "reidkit.checkpoint/1"
    model        {"name", "num_classes", "feature_dim", "kwargs"}: the model spec
    state_dict   the model's tensors
    config       the resolved configuration (data: height, width, mean, std, ...)
    version      reidkit's version
    ... and, from training: optimizer, scheduler, scaler, epoch, step, best, rng, sampler

Files are written atomically (temporary file, fsync, rename). Training writes them
(:mod:`reidkit.engine.trainer`); extraction, export and ``train --pretrained`` read them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from reidkit.errors import DataError
from reidkit.fileio import atomic_path, load_torch_file, os_errors_named
from reidkit.models.spec import IMAGENET_MEAN, IMAGENET_STD

FORMAT = "reidkit.checkpoint/1"
# what a checkpoint without a data config was trained with
DEFAULT_DATA = {
    "height": 256,
    "width": 128,
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
    "interpolation": "bilinear",
}


def model_spec(name: str, model, num_classes: int, **kwargs: Any) -> dict[str, Any]:
    """The spec a checkpoint keeps to rebuild ``model`` with :func:`create_model`."""
    return {
        "name": name,
        "num_classes": int(num_classes),
        "feature_dim": int(model.feature_dim),
        "kwargs": kwargs,
    }


def save_checkpoint(
    path: str | os.PathLike[str],
    model,
    spec: dict[str, Any],
    *,
    config: dict[str, Any] | None = None,
    **state: Any,
) -> Path:
    """Write a checkpoint atomically; ``state`` adds training state (optimizer, epoch, ...)."""
    import torch

    from reidkit import __version__

    checkpoint = {
        "format": FORMAT,
        "model": spec,
        "state_dict": model.state_dict(),
        "config": config or {},
        "version": __version__,
        **state,
    }
    path = Path(path)
    # serialised in memory, then written by plain file I/O: a full disk is then an OSError
    # naming the file (torch.save on a full disk raises an unhelpful RuntimeError)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with atomic_path(path) as tmp, os_errors_named(path), open(tmp, "wb") as f:
        f.write(buffer.getbuffer())
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint safely (weights_only) and check its format.

    Raises:
        MissingInputError: no such file.
        DataError: unreadable, or not a reidkit checkpoint.
    """
    checkpoint = load_torch_file(path, "checkpoint")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise DataError(
            f"{path}: not a reidkit checkpoint (no format '{FORMAT}')",
            hint="for plain weights use --model NAME --weights FILE",
        )
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]):
    """Rebuild the model a checkpoint describes, with its weights, in eval mode."""
    from reidkit.models.factory import create_model

    spec = checkpoint["model"]
    model = create_model(spec["name"], spec["num_classes"], **spec.get("kwargs", {}))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def data_config(checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """Image size, resize and normalisation a model was trained with (ImageNet's by
    default)."""
    data = (checkpoint or {}).get("config", {}).get("data", {})
    return {key: data.get(key, default) for key, default in DEFAULT_DATA.items()}
