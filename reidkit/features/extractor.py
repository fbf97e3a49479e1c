"""Batched feature extraction into HDF5 feature files: resumable, idempotent, locked.

Images are decoded by DataLoader workers in a fixed order. Rows are flushed in chunks by a
:class:`~reidkit.features.store.FeatureWriter`, so a killed extraction continues from the
rows already flushed and finishes with the same file an uninterrupted run writes. A
complete file whose provenance (checkpoint hash, the exact list of images and labels, the
options) matches is left alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.data.sample import Sample
from reidkit.errors import DataError, UsageError
from reidkit.features.store import FeatureWriter, read_features
from reidkit.fileio import file_lock
from reidkit.progress import ProgressFn, no_progress

log = logging.getLogger(__name__)
AMP_MODES = ("off", "bf16", "fp16")
FLUSH_BATCHES = 16  # batches per flushed chunk: at most this much work is lost to a kill


@dataclass
class ExtractOptions:
    """How images become features (all of it is part of the file's provenance)."""

    height: int = 256
    width: int = 128
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    flip: bool = False
    storage: str = "float32"
    amp: str = "off"
    channels_last: bool = False

    def check(self) -> None:
        if self.height < 1 or self.width < 1:
            raise UsageError(f"image size must be positive, got {self.height}x{self.width}")
        if self.amp not in AMP_MODES:
            raise UsageError(f"--amp must be one of {', '.join(AMP_MODES)}, not {self.amp!r}")


class ImageList:
    """A map-style dataset of image files: (tensor, sample index, error text)."""

    def __init__(self, paths: list[str], offset: int, options: ExtractOptions) -> None:
        self.paths = paths
        self.offset = offset
        self.size = (options.width, options.height)
        self.mean = np.asarray(options.mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(options.std, dtype=np.float32).reshape(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch
        from PIL import Image

        path = self.paths[i]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize(self.size, Image.BILINEAR)
            array = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
            array = (array - self.mean) / self.std
            error = ""
        except Exception as exc:  # PIL raises many types for corrupt or foreign files
            array = np.zeros((3, self.size[1], self.size[0]), dtype=np.float32)
            error = f"{type(exc).__name__}: {exc}"
        return torch.from_numpy(np.ascontiguousarray(array)), self.offset + i, error


def samples_sha256(samples: list[Sample], root: Path) -> str:
    """A digest of the image list and labels, to tell whether a file is up to date."""
    digest = hashlib.sha256()
    for s in samples:
        digest.update(f"{os.path.relpath(s.path, root)}\t{s.pid}\t{s.camid}\t{s.dsetid}\n".encode())
    return digest.hexdigest()


def is_up_to_date(path: Path, provenance: dict) -> bool:
    """True when ``path`` is a complete feature file made from the same inputs and options."""
    if not path.is_file():
        return False
    try:
        attrs = read_features(path).attrs
    except Exception:  # an unreadable or foreign file is simply redone
        return False
    return attrs.get("provenance") == json.dumps(provenance, sort_keys=True)


def _forward(model, images, options: ExtractOptions, device: str):
    import torch

    images = images.to(device, non_blocking=True)
    if options.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(options.amp)
    with (
        torch.inference_mode(),
        torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None),
    ):
        features = model(images).float()
        if options.flip:
            features = (features + model(torch.flip(images, dims=[3])).float()) / 2
    return features.cpu().numpy()


def extract_subset(
    model,
    samples: list[Sample],
    out: str | os.PathLike[str],
    *,
    root: Path,
    attrs: dict[str, Any],
    options: ExtractOptions,
    device: str = "cpu",
    batch_size: int = 128,
    workers: int = 0,
    skip_bad: bool = False,
    force: bool = False,
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Extract the features of ``samples`` into the feature file ``out``.

    Returns:
        file, rows, feature_dim, skipped (paths), resumed (rows found from an interrupted
        run), up_to_date, seconds, images_per_second.

    Raises:
        DataError: an image cannot be read (unless ``skip_bad``).
        LockedError: another process writes the same file.
    """
    import torch

    out = Path(out)
    options.check()
    if not samples:
        raise UsageError(f"nothing to extract for {out.name}: the subset has no images")
    provenance = {
        **attrs.get("provenance", {}),
        "images": samples_sha256(samples, root),
        "options": asdict(options),
    }
    start = time.perf_counter()
    with file_lock(out):
        if not force and is_up_to_date(out, provenance):
            return {
                "file": str(out),
                "rows": len(read_features(out)),
                "up_to_date": True,
                "skipped": [],
                "resumed": 0,
                "seconds": 0.0,
                "images_per_second": 0.0,
            }
        if force:
            out.unlink(missing_ok=True)
        model = model.to(device).eval()
        if options.channels_last:
            model = model.to(memory_format=torch.channels_last)
        writer = FeatureWriter(
            out,
            model.feature_dim,
            storage=options.storage,
            with_paths=True,
            with_dsetids=True,
            with_index=True,
            chunk_rows=batch_size * FLUSH_BATCHES,  # whole batches: a resume forms the same ones
            attrs={
                **attrs,
                "provenance": provenance,
                "root": str(root),
                "image_size": [options.height, options.width],
                "flip": options.flip,
                "normalized": False,
            },
        )
        first = writer.next_index
        images = ImageList([s.path for s in samples[first:]], first, options)
        loader = torch.utils.data.DataLoader(
            images,
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            pin_memory=device.startswith("cuda"),
            persistent_workers=False,
        )
        done = first
        progress(done, len(samples))
        for batch, index, errors in loader:
            index = index.numpy()
            ok = np.array([not e for e in errors])
            for i, error in zip(index[~ok], np.asarray(errors)[~ok], strict=True):
                if not skip_bad:
                    raise DataError(
                        f"cannot read image {samples[i].path}: {error}",
                        hint="--skip-bad leaves such images out and lists them",
                    )
                log.warning("skipped unreadable image %s: %s", samples[i].path, error)
            if ok.any():
                features = _forward(model, batch[torch.from_numpy(ok)], options, device)
                kept = [samples[i] for i in index[ok]]
                writer.append(
                    features,
                    [s.pid for s in kept],
                    [s.camid for s in kept],
                    [os.path.relpath(s.path, root) for s in kept],
                    [s.dsetid for s in kept],
                    index=index[ok],
                )
            done += len(index)
            progress(done, len(samples))
        # skipped images are the gaps in the rows' sample indices, also across a resume
        missing = np.setdiff1d(np.arange(len(samples)), writer.indices())
        skipped = [samples[i].path for i in missing]
        writer.finish(skipped=json.dumps([os.path.relpath(p, root) for p in skipped]))
    seconds = time.perf_counter() - start
    extracted = len(samples) - first
    return {
        "file": str(out),
        "rows": writer.rows,
        "feature_dim": model.feature_dim,
        "skipped": skipped,
        "resumed": writer.resumed_rows,
        "up_to_date": False,
        "seconds": round(seconds, 3),
        "images_per_second": round(extracted / seconds, 1) if seconds else 0.0,
    }


def output_path(out_dir: Path, dataset: str, subset: str) -> Path:
    """``DIR/<dataset>-<subset>.h5``."""
    return Path(out_dir) / f"{dataset}-{subset}.h5"


def extract_dataset(
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    seed: int = 0,
    dataset: str | None = None,
    root: str | os.PathLike[str] = "data",
    subsets: tuple[str, ...] = ("query", "gallery"),
    images: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str],
    height: int | None = None,
    width: int | None = None,
    device: str = "auto",
    progress_factory=None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Extract features of a dataset's subsets (or a plain image folder) to feature files.

    The model comes from a checkpoint, or from ``model_name`` (random initialisation seeded
    by ``seed``, or ``weights``). Image size and normalisation default to the checkpoint's.
    ``kwargs`` go to :func:`extract_subset` (batch_size, workers, skip_bad, force) and to
    :class:`ExtractOptions` (flip, storage, amp, channels_last).
    """
    import torch

    from reidkit.engine.checkpoint import (
        data_config,
        file_sha256,
        load_checkpoint,
        model_from_checkpoint,
    )
    from reidkit.models import create_model, load_weights

    if (checkpoint is None) == (model_name is None):
        raise UsageError("give either a CHECKPOINT or --model NAME")
    if (dataset is None) == (images is None):
        raise UsageError("give either --dataset or --images")
    weights_report = None
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        model, source = model_from_checkpoint(ckpt), ckpt
        model_attrs = {
            "model": ckpt["model"]["name"],
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": file_sha256(checkpoint),
            "config": ckpt.get("config"),
        }
    else:
        torch.manual_seed(seed)
        model, source = create_model(model_name, num_classes=1).eval(), None
        if weights is not None:
            weights_report = load_weights(model, weights)
        model_attrs = {
            "model": model_name,
            "seed": seed,
            "checkpoint_sha256": file_sha256(weights) if weights else "",
        }
    data = data_config(source)
    option_keys = {"flip", "storage", "amp", "channels_last"}
    options = ExtractOptions(
        height=height or data["height"],
        width=width or data["width"],
        mean=list(data["mean"]),
        std=list(data["std"]),
        **{k: v for k, v in kwargs.items() if k in option_keys},
    )
    run_kwargs = {k: v for k, v in kwargs.items() if k not in option_keys}
    device = resolve_torch_device(device)
    jobs = _jobs(dataset, root, subsets, images, Path(out_dir))
    results = []
    for name, subset, samples, base, path in jobs:
        attrs = {
            **model_attrs,
            "dataset": name,
            "subset": subset,
            "provenance": {k: v for k, v in model_attrs.items() if k != "config"},
        }
        progress = progress_factory(f"{name}-{subset}") if progress_factory else None
        result = extract_subset(
            model,
            samples,
            path,
            root=base,
            attrs=attrs,
            options=options,
            device=device,
            progress=progress or no_progress,
            **run_kwargs,
        )
        results.append({"subset": subset, **result})
    return {
        "files": results,
        "weights": weights_report,
        "device": device,
        "options": asdict(options),
    }


def _jobs(dataset, root, subsets, images, out_dir: Path):
    """(dataset name, subset, samples, root of the paths, output file) per file to write."""
    from reidkit.data import load_dataset
    from reidkit.data.market_style import IMAGE_SUFFIXES

    if images is not None:
        folder = Path(images)
        if not folder.is_dir():
            raise UsageError(f"--images {folder}: no such folder")
        paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise UsageError(f"--images {folder}: no image files in it")
        samples = [Sample(p, -1, -1) for p in paths]
        return [
            (
                folder.resolve().name,
                "images",
                samples,
                folder,
                output_path(out_dir, folder.resolve().name, "images"),
            )
        ]
    ds = load_dataset(dataset, root)
    jobs = []
    for subset in subsets:
        if subset not in ("train", "query", "gallery"):
            raise UsageError(f"unknown subset {subset!r}; choose from train, query, gallery")
        jobs.append(
            (ds.name, subset, ds.subset(subset), ds.root, output_path(out_dir, ds.name, subset))
        )
    return jobs


def resolve_torch_device(device: str) -> str:
    """ "auto" is cuda when available, else cpu; asking for cuda without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda was asked for but no CUDA device is available",
            hint="use --device cpu or auto",
        )
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device '{device}'", hint="devices: auto, cpu, cuda")
    return device
