"""The check every export passes before it is published: ONNX Runtime against PyTorch on
real images, at two batch sizes, through the very runners ``extract`` uses.

The difference is measured on the features' own scale: the largest |onnx - torch| divided
by max(1, the largest |torch|), so it is the absolute difference for features up to 1 and
a relative one for larger (a randomly initialised deep ResNet's features reach 1e4).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.deploy.metadata import DeployInfo
from reidkit.errors import DataError, ReidkitError, UsageError
from reidkit.features.batches import ImageList, batches_in_process
from reidkit.features.extractor import TorchRunner
from reidkit.features.jobs import image_jobs
from reidkit.features.options import ExtractOptions

log = logging.getLogger(__name__)
VERIFY_IMAGES = 8


def pick_images(paths: list[str], count: int = VERIFY_IMAGES) -> list[str]:
    """``count`` paths spread evenly over the list (different people and cameras)."""
    if len(paths) <= count:
        return list(paths)
    return [paths[i * len(paths) // count] for i in range(count)]


def compare(reference: np.ndarray, features: np.ndarray) -> dict[str, float]:
    """Largest absolute difference, the same on the features' scale, and the lowest cosine
    similarity of corresponding rows."""
    diff = float(np.abs(features - reference).max())
    scale = float(np.abs(reference).max())
    return {
        "max_abs_diff": diff,
        "feature_scale": scale,
        "scaled_diff": diff / max(1.0, scale),
        "min_cosine": float(row_cosines(reference, features).min()),
    }


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine similarity of each row of ``a`` with the same row of ``b``."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def verify_export(
    serialized: bytes, model, info: DeployInfo, paths: list[str], tolerance: float
) -> dict[str, Any]:
    """Run the serialized graph with ONNX Runtime (CPU) and ``model`` with PyTorch (fp32) on
    ``paths``; DataError when the features differ beyond ``tolerance`` on their scale."""
    import onnxruntime

    from reidkit.deploy.runtime import OnnxRunner, open_session
    from reidkit.threads import thread_count

    if not paths:
        raise UsageError("nothing to verify the export on: no images")
    images = ImageList(paths, 0, info.height, info.width, info.interpolation)
    (pixels, _, errors), *_ = batches_in_process(images, len(images))
    for path, error in zip(paths, errors, strict=True):
        if error:
            raise DataError(f"cannot read image {path}: {error}", hint="verify on --images DIR")
    ok = np.ones(len(pixels), dtype=bool)
    options = ExtractOptions(
        height=info.height, width=info.width, mean=info.mean, std=info.std,
        interpolation=info.interpolation, flip=info.flip,
    )  # fmt: skip
    reference = TorchRunner(model, options, "cpu").forward(pixels, ok)
    runner = OnnxRunner(open_session(serialized, "cpu", thread_count()), info, "the export")
    whole = runner.forward(pixels, ok)
    one_by_one = np.concatenate(
        [runner.forward(pixels[i : i + 1], ok[:1]) for i in ok.nonzero()[0]]
    )
    result = compare(np.concatenate([reference, reference]), np.concatenate([whole, one_by_one]))
    result.update(
        images=len(paths),
        batch_sizes=[len(paths), 1] if info.batch == "dynamic" else [int(info.batch)],
        tolerance=tolerance,
        runtime=f"onnxruntime {onnxruntime.__version__}",
        provider="CPUExecutionProvider",
    )
    if not np.isfinite(result["scaled_diff"]) or result["scaled_diff"] > tolerance:
        raise DataError(
            f"verification failed: ONNX Runtime's features differ from PyTorch's by "
            f"{result['max_abs_diff']:.3g} (features up to {result['feature_scale']:.3g}, "
            f"tolerance {tolerance:g} on that scale, lowest cosine "
            f"{result['min_cosine']:.6f}); nothing was written",
            hint="--tolerance sets the limit; a --half export needs about 1e-2",
        )
    return result


def verification_images(
    *, images=None, dataset: str | None = None, root=None, config: dict | None = None
) -> tuple[list[str], str]:
    """The images an export is verified on, and where they come from: ``images`` (a
    folder), ``dataset`` under ``root``, else the dataset the checkpoint was trained on
    (its config's data.dataset and data.root)."""
    if images is not None and dataset is not None:
        raise UsageError("give --images or --dataset to verify on, not both")
    trained_on = (config or {}).get("data", {})
    if images is None and dataset is None:
        if not trained_on.get("dataset"):
            raise UsageError(
                "nothing to verify the export on: give --images DIR or --dataset NAME",
                hint="a checkpoint verifies on the dataset it was trained on by default",
            )
        dataset, root = trained_on["dataset"], root or trained_on.get("root", "data")
        try:
            jobs = image_jobs(dataset, root, ("query", "gallery"), None, Path("."))
        except ReidkitError as exc:
            raise UsageError(
                f"cannot verify on the checkpoint's dataset {dataset!r} under {root}: "
                f"{exc.message}",
                hint="give --images DIR (any person crops) or --dataset NAME --root DIR",
            ) from None
    else:
        subsets = ("images",) if images is not None else ("query", "gallery")
        jobs = image_jobs(dataset, root or "data", subsets, images, Path("."))
    paths = [s.path for job in jobs for s in job[2]]
    if len(paths) < 2:
        raise UsageError(
            f"{images or dataset}: the export is verified at two batch sizes, which needs "
            f"at least 2 images, not {len(paths)}"
        )
    where = str(images) if images is not None else f"{jobs[0][0]} (query and gallery)"
    return pick_images(paths), where
