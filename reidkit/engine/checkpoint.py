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

Files are written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from pathlib import Path
from typing import Any

from reidkit.errors import DataError, MissingInputError, UsageError
from reidkit.fileio import atomic_path, is_hdf5, os_errors_named

FORMAT = "reidkit.checkpoint/1"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DEFAULT_DATA = {"height": 256, "width": 128, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}


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


def load_torch_file(path: str | os.PathLike[str], what: str, hint: str | None = None) -> Any:
    """``torch.load(weights_only=True)`` on the CPU, with one-line errors naming the file.

    Raises:
        MissingInputError: no such file ("``what`` not found").
        UsageError: a folder (pointing at a run directory's weights file when it has one).
        DataError: torch cannot load it safely.
    """
    import torch

    path = Path(path)
    if path.is_dir():
        inside = [path / "weights" / n for n in ("best.pt", "last.pt")]
        found = next((str(p) for p in inside if p.is_file()), None)
        raise UsageError(
            f"{what} {path} is a folder, not a file",
            hint=f"a run directory's weights are files: {found}" if found else hint,
        )
    if not path.is_file():
        raise MissingInputError(f"{what} not found: {path}", hint=hint)
    try:
        with torch.serialization.safe_globals(numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        # torch's own text advises weights_only=False, unrestricted unpickling: never pass
        # that on; say what the file is instead
        raise DataError(f"{path}: not a loadable {what}: {_what_it_is(path, exc)}") from None


def numpy_scalar_globals() -> list:
    """What unpickling numpy's numeric scalars needs (torchreid's Engine saves ``rank1`` as
    one): the scalar constructor and the numeric dtypes; never arrays or arbitrary objects."""
    import numpy as np

    scalar = getattr(np, "_core", np.core).multiarray.scalar
    codes = "?bhilqBHILQefdg"  # bool, signed and unsigned integers, floats
    return [scalar, np.dtype, *(type(np.dtype(code)) for code in codes)]


def _what_it_is(path: Path, exc: Exception) -> str:
    import pickle

    if is_hdf5(path):
        return "it is an HDF5 file (a feature file?), not PyTorch weights"
    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        return "it is not a PyTorch file"
    if isinstance(exc, pickle.UnpicklingError):
        return (
            "it holds Python objects other than tensors and plain values, which reidkit "
            "never unpickles (save the weights as a state dict of tensors)"
        )
    return f"a damaged PyTorch file ({type(exc).__name__})"


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
    from reidkit.models import create_model

    spec = checkpoint["model"]
    model = create_model(spec["name"], spec["num_classes"], **spec.get("kwargs", {}))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def data_config(checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """Image size and normalisation a model was trained with (ImageNet's by default)."""
    data = (checkpoint or {}).get("config", {}).get("data", {})
    return {key: data.get(key, default) for key, default in DEFAULT_DATA.items()}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MB pieces; a file unchanged since (same size and
    modification time) is not read again by this process (an extraction's rerun check and
    the extraction itself both need the checkpoint's)."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(2**20), b""):
            digest.update(piece)
    return digest.hexdigest()
