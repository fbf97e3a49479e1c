"""Batched feature extraction into HDF5 feature files: resumable, idempotent, locked.

Image datasets get a row per image; video datasets a row per tracklet, its frames pooled
over time (:mod:`reidkit.features.tracklets`), through the same batching, resuming,
locking and file format.

Images are decoded in a fixed order (in the main process on the CPU, by DataLoader workers
with a GPU), and rows are flushed in chunks by a
:class:`~reidkit.features.writer.FeatureWriter`, so a killed extraction continues from the
rows already flushed and finishes with the same file an uninterrupted run writes. A
complete file whose provenance (checkpoint hash, the exact list of images and labels, the
options: :mod:`reidkit.features.options`) matches is left alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.data.sample import Sample, kind_of
from reidkit.device import barrier, distributed_rank, tune_convolutions
from reidkit.errors import DataError, UsageError
from reidkit.features.batches import ImageList, batches_in_process, pixel_offset_divisor
from reidkit.features.options import ExtractOptions, file_provenance, is_up_to_date
from reidkit.features.store import feature_file_info, read_features
from reidkit.features.tracklets import compute_tracklet_features, extract_tracklet_rows
from reidkit.features.writer import FeatureWriter
from reidkit.fileio import file_lock
from reidkit.progress import ProgressFn, no_progress
from reidkit.threads import rebalance as rebalance_threads

log = logging.getLogger(__name__)
FLUSH_BATCHES = 16  # batches per flushed chunk: at most this much work is lost to a kill


def normalize(images, options: ExtractOptions):
    """uint8 (N, H, W, 3) pixels to float32 (N, 3, H, W), scaled to [0, 1] and standardised
    per channel (:func:`reidkit.features.batches.pixel_offset_divisor`)."""
    import torch

    offset, divisor = (
        torch.from_numpy(v).to(images.device)
        for v in pixel_offset_divisor(options.mean, options.std)
    )
    # NHWC pixels permuted are already channels_last: keep that layout when it is asked for
    layout = torch.channels_last if options.channels_last else torch.contiguous_format
    x = images.permute(0, 3, 1, 2).to(torch.float32, memory_format=layout)
    return x.sub_(offset).div_(divisor)


def full_precision(device: str, amp: str) -> None:
    """fp32 on CUDA in fp32: cuDNN's convolutions (and matmuls) default to TF32 on Ampere and
    later, about 1e-3 relative from the CPU's features; extraction in fp32 turns it off."""
    if device.startswith("cuda") and amp == "off":
        import torch

        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


class TorchRunner:
    """A PyTorch model as extraction runs it: on ``device``, in eval mode, with the
    options' flip, autocast, memory format and BatchNorm folding. ``exact``: fp32 without
    TF32 (a feature file's numbers); evaluation during training leaves the training's
    settings."""

    def __init__(self, model, options: ExtractOptions, device: str, exact: bool = True) -> None:
        import torch

        if options.fold_bn:  # a copy: the caller's model (a training's) is left as it is
            from reidkit.models.folding import fold_batchnorm

            model, folded = fold_batchnorm(model)
            log.debug("%d BatchNorm layers folded into their convolutions", folded)
        self.model = model.to(device).eval()
        if exact:
            full_precision(device, options.amp)
            tune_convolutions(device)  # batches of --batch-size, one shape
        if options.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.options, self.device = options, device
        self.feature_dim = model.feature_dim

    def batches(self, images: ImageList, batch_size: int, workers: int):
        if workers == 0:
            return batches_in_process(images, batch_size)
        import torch

        return torch.utils.data.DataLoader(
            images,
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            pin_memory=self.device.startswith("cuda"),
        )

    def _readable(self, batch, ok: np.ndarray):
        """The batch's readable images, on the device: the batch goes over as the loader
        pinned it (an asynchronous copy), and unreadable rows are dropped there."""
        import torch

        pixels = torch.as_tensor(batch).to(self.device, non_blocking=True)
        if ok.all():
            return pixels
        return pixels[torch.from_numpy(np.flatnonzero(ok)).to(self.device)]

    def forward(self, batch, ok: np.ndarray) -> np.ndarray:
        return _forward(self.model, self._readable(batch, ok), self.options, self.device)

    def frame_features(self, batch, ok: np.ndarray) -> list[np.ndarray]:
        """The trunk's features of the readable frames, and of their mirror images with
        the options' flip (the views a tracklet is pooled over)."""
        pixels = self._readable(batch, ok)
        return _forward(self.model.features, pixels, self.options, self.device, views=True)

    def head(self, pooled: np.ndarray) -> np.ndarray:
        """The embedding of pooled frame features (the model's head, in eval mode)."""
        import torch

        x = torch.from_numpy(pooled).to(self.device)
        with _inference(self.options, self.device):
            return self.model.head(x).float().cpu().numpy()


@contextlib.contextmanager
def _inference(options: ExtractOptions, device: str):
    """Inference mode with the options' autocast."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(options.amp)
    with (
        torch.inference_mode(),
        torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None),
    ):
        yield


def _forward(model, images, options: ExtractOptions, device: str, views: bool = False):
    """``model`` on uint8 (or normalised) images; averaged with the mirror images' output
    under the options' flip, or with ``views`` both outputs as a list."""
    import torch

    images = images.to(device, non_blocking=True)
    if images.dtype == torch.uint8:
        images = normalize(images, options)
    if options.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with _inference(options, device):
        outputs = [model(images).float()]
        if options.flip:
            outputs.append(model(torch.flip(images, dims=[3])).float())
    if views:
        return [o.cpu().numpy() for o in outputs]
    return (sum(outputs) / len(outputs)).cpu().numpy()


def extract_subset(
    runner,
    samples: list[Sample],
    out: str | os.PathLike[str],
    *,
    root: Path,
    attrs: dict[str, Any],
    options: ExtractOptions,
    batch_size: int = 128,
    workers: int = 0,
    skip_bad: bool = False,
    force: bool = False,
    wait_for_lock: bool = False,
    progress: ProgressFn = no_progress,
    locked: bool = False,
) -> dict[str, Any]:
    """Extract the features of ``samples`` into the feature file ``out`` with ``runner``
    (a :class:`TorchRunner`, or ONNX Runtime's :class:`reidkit.deploy.runtime.OnnxRunner`).

    With ``force`` the file is made again; the old one stays readable until the new one
    replaces it. With ``wait_for_lock`` a concurrent writer is waited for, else LockedError;
    ``locked``: the caller holds the file's lock already (a run of several files takes all
    of theirs first, :func:`reidkit.features.jobs.extract_dataset`).

    ``samples`` are images, or tracklets (one row each, their frames pooled).

    Returns:
        file, rows, feature_dim, skipped (paths; of tracklets, the first frame), resumed
        (rows found from an interrupted run), up_to_date, seconds, images_per_second (of
        tracklets: frames per second).

    Raises:
        DataError: an image cannot be read (unless ``skip_bad``).
        LockedError: another process writes the same file.
    """
    out = Path(out)
    options.check()
    if not samples:
        raise UsageError(f"nothing to extract for {out.name}: the subset has no images")
    provenance = file_provenance(attrs, samples, root, options)
    tracklets = kind_of(samples) == "tracklet"
    if tracklets and options.sample is None:
        raise UsageError("tracklets need the options' sample, seq_len and temporal")
    start = time.perf_counter()
    rank, world = distributed_rank()
    part = out if world == 1 else out.with_name(f"{out.name}.rank{rank}-of-{world}")
    with (
        file_lock(out, wait=wait_for_lock)
        if rank == 0 and not locked
        else contextlib.nullcontext(),
        file_lock(part) if part != out else contextlib.nullcontext(),
    ):
        up_to_date = not force and is_up_to_date(out, provenance)
        barrier()  # every process has decided before any of them writes
        if up_to_date:
            return up_to_date_result(out)
        lo, hi = shard(len(samples), batch_size, rank, world)
        file_attrs = {
            **attrs,
            "provenance": provenance,
            "root": str(root),
            "image_size": [options.height, options.width],
            "mean": list(options.mean),
            "std": list(options.std),
            "interpolation": options.resize,
            "flip": options.flip,
            "normalized": False,
        }
        if tracklets:
            how = "all" if options.sample == "all" else f"{options.sample} {options.seq_len}"
            file_attrs |= {"kind": "tracklet", "temporal": options.temporal, "sample": how}
        resumed = ran = 0
        if force or not is_up_to_date(part, provenance):
            rows = extract_tracklet_rows if tracklets else _extract_rows
            resumed, ran = rows(
                runner, samples, lo, hi, part, file_attrs, options, batch_size, workers,
                skip_bad, progress,
            )  # fmt: skip
        barrier()
        if rank == 0 and world > 1:
            _merge_parts(
                out,
                [out.with_name(f"{out.name}.rank{r}-of-{world}") for r in range(world)],
                options.storage,
            )
        barrier()
    seconds = time.perf_counter() - start
    info = feature_file_info(out)  # merged by rank 0 before the last barrier
    skipped = [os.path.join(root, p) for p in json.loads(info["attrs"].get("skipped") or "[]")]
    result = {
        "file": str(out),
        "rows": info["rows"],
        "feature_dim": info["dim"],
        "skipped": skipped,
        "resumed": resumed,
        "up_to_date": False,
        "seconds": round(seconds, 3),
        "images_per_second": round(ran * world / seconds, 1) if seconds else 0.0,
    }
    if tracklets:
        frames = json.loads(info["attrs"].get("skipped_frames") or "[]")
        result["skipped_frames"] = [os.path.join(root, p) for p in frames]
    return result


def up_to_date_result(out: Path, rows: int | None = None) -> dict[str, Any]:
    """What :func:`extract_subset` returns for a file it leaves as it is (``rows``: its
    rows, when the file was read already)."""
    return {
        "file": str(out),
        "rows": feature_file_info(out)["rows"] if rows is None else rows,
        "up_to_date": True,
        "skipped": [],
        "resumed": 0,
        "seconds": 0.0,
        "images_per_second": 0.0,
    }


def _extract_rows(
    runner, samples, lo, hi, path, attrs, options, batch_size, workers, skip_bad, progress
) -> tuple[int, int]:
    """Extract samples[lo:hi] into ``path``; returns (rows resumed from an earlier run,
    images run through the model now)."""
    writer = FeatureWriter(
        path,
        runner.feature_dim,
        storage=options.storage,
        with_paths=True,
        with_dsetids=True,
        # whole batches per chunk: a resumed run forms the very same batches
        with_index=True,
        chunk_rows=batch_size * FLUSH_BATCHES,
        attrs=attrs,
    )
    first = max(lo, writer.next_index)
    images = ImageList(
        [s.path for s in samples[first:hi]],
        first,
        options.height,
        options.width,
        options.resize,
    )
    loader = runner.batches(images, batch_size, workers)
    root = Path(attrs["root"])
    done = first - lo
    progress(done, hi - lo)
    for batch, index, errors in loader:
        rebalance_threads()  # share the cores with commands started meanwhile
        index = np.asarray(index)
        ok = np.array([not e for e in errors])
        for i, error in zip(index[~ok], np.asarray(errors)[~ok], strict=True):
            if not skip_bad:
                raise DataError(
                    f"cannot read image {samples[i].path}: {error}",
                    hint="--skip-bad leaves such images out and lists them",
                )
            log.warning("skipped unreadable image %s: %s", samples[i].path, error)
        if ok.any():
            features = runner.forward(batch, ok)
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
        progress(done, hi - lo)
    # skipped images are the gaps in the rows' sample indices, also across a resume
    missing = np.setdiff1d(np.arange(lo, hi), writer.indices())
    skipped = [os.path.relpath(samples[i].path, root) for i in missing]
    writer.finish(skipped=json.dumps(skipped))
    return writer.resumed_rows, hi - first


def shard(n: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous sample range of one process, cut at batch boundaries so that every
    process forms exactly the batches a single process would."""
    batches = -(-n // batch_size)
    lo, hi = rank * batches // world, (rank + 1) * batches // world
    return min(n, lo * batch_size), min(n, hi * batch_size)


def _merge_parts(out: Path, parts: list[Path], storage: str) -> None:
    """Concatenate the processes' part files, in rank order, into ``out``."""
    from reidkit.features.writer import write_features

    # a process whose share was empty (fewer batches than processes) wrote a part of no rows
    sets = [read_features(p) for p in parts if feature_file_info(p)["rows"]]
    lists = {
        key: [p for fs in sets for p in json.loads(fs.attrs.get(key) or "[]")]
        for key in ("skipped", "skipped_frames")
    }
    attrs = {
        k: v
        for k, v in sets[0].attrs.items()
        if k not in ("schema", "complete", "created", "reidkit_version")
    }
    if "skipped_frames" not in sets[0].attrs:  # an image file
        del lists["skipped_frames"]
    write_features(
        out,
        np.concatenate([fs.features for fs in sets]),
        np.concatenate([fs.pids for fs in sets]),
        np.concatenate([fs.camids for fs in sets]),
        paths=[p for fs in sets for p in fs.paths],
        dsetids=np.concatenate([fs.dsetids for fs in sets]),
        frames=None if sets[0].frames is None else np.concatenate([fs.frames for fs in sets]),
        storage=storage,
        attrs={**attrs, **{k: json.dumps(v) for k, v in lists.items()}},
    )
    for p in parts:
        p.unlink()


def compute_features(
    model,
    samples: list[Sample],
    options: ExtractOptions,
    *,
    device: str = "cpu",
    batch_size: int = 128,
    workers: int = 0,
) -> np.ndarray:
    """Features of ``samples`` in memory, as ``extract`` computes them (for evaluation
    during training: TF32 as the training has it), decoded by ``workers`` processes (0:
    in this one). An unreadable image is a DataError naming it. Tracklets get a row each,
    pooled as the options say."""
    runner = TorchRunner(model, options, device, exact=False)
    if kind_of(samples) == "tracklet":
        return compute_tracklet_features(
            runner, samples, options, batch_size=batch_size, workers=workers
        )
    images = ImageList(
        [s.path for s in samples], 0, options.height, options.width,
        options.resize,
    )  # fmt: skip
    parts = []
    for batch, index, errors in runner.batches(images, batch_size, workers):
        ok = np.array([not e for e in errors])
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            path = samples[int(np.asarray(index)[bad])].path
            raise DataError(f"cannot read image {path}: {errors[bad]}")
        parts.append(runner.forward(batch, ok))
    return np.concatenate(parts) if parts else np.zeros((0, model.feature_dim), np.float32)
