"""Batched feature extraction into HDF5 feature files: resumable, idempotent, locked.

Image datasets get a row per image; video datasets a row per tracklet, its frames pooled
over time (:mod:`reidkit.features.tracklets`), through the same batching, resuming,
locking and file format.

Images are decoded in a fixed order (in the main process on the CPU, by DataLoader workers
with a GPU), and rows are flushed in chunks by a
:class:`~reidkit.features.store.FeatureWriter`, so a killed extraction continues from the
rows already flushed and finishes with the same file an uninterrupted run writes. A
complete file whose provenance (checkpoint hash, the exact list of images and labels, the
options) matches is left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.data.sample import Sample, Tracklet, kind_of
from reidkit.device import barrier, distributed_rank, init_distributed, resolve_device
from reidkit.errors import DataError, ReidkitError, UsageError
from reidkit.features.batches import ImageList, batches_in_process
from reidkit.features.store import STORAGE_DTYPES, FeatureWriter, feature_file_info, read_features
from reidkit.features.tracklets import compute_tracklet_features, extract_tracklet_rows
from reidkit.fileio import file_lock
from reidkit.progress import ProgressFn, no_progress
from reidkit.threads import rebalance as rebalance_threads
from reidkit.threads import thread_count

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
    # tracklets only (None for images): frames pooled ("all", or seq_len "evenly"), and how
    sample: str | None = None
    seq_len: int | None = None
    temporal: str | None = None

    def check(self) -> None:
        if self.height < 1 or self.width < 1:
            raise UsageError(f"image size must be positive, got {self.height}x{self.width}")
        if self.amp not in AMP_MODES:
            raise UsageError(f"--amp must be one of {', '.join(AMP_MODES)}, not {self.amp!r}")
        if self.storage not in STORAGE_DTYPES:
            raise UsageError(
                f"--storage must be one of {', '.join(STORAGE_DTYPES)}, not {self.storage!r}"
            )
        if self.sample not in (None, "all", "evenly"):
            raise UsageError(f"--sample must be all or evenly, not {self.sample!r}")
        if self.temporal not in (None, "avg", "max"):
            raise UsageError(f"--temporal must be avg or max, not {self.temporal!r}")
        if self.seq_len is not None and self.seq_len < 1:
            raise UsageError(f"--seq-len must be at least 1, got {self.seq_len}")

    def provenance(self) -> dict[str, Any]:
        """The options as a file's provenance records them (the tracklet ones only when
        they apply, so image files keep the provenance they always had)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def normalize(images, options: ExtractOptions):
    """uint8 (N, H, W, 3) pixels to float32 (N, 3, H, W), scaled to [0, 1] and standardised
    per channel: (x / 255 - mean) / std, as one scale and one shift."""
    import torch

    std = torch.tensor(options.std, dtype=torch.float32, device=images.device)
    mean = torch.tensor(options.mean, dtype=torch.float32, device=images.device)
    scale, shift = (1.0 / (255.0 * std)).view(1, 3, 1, 1), (mean / std).view(1, 3, 1, 1)
    # NHWC pixels permuted are already channels_last: keep that layout when it is asked for
    layout = torch.channels_last if options.channels_last else torch.contiguous_format
    x = images.permute(0, 3, 1, 2).to(torch.float32, memory_format=layout)
    return x.mul_(scale).sub_(shift)


def samples_sha256(samples: list[Sample | Tracklet], root: Path) -> str:
    """A digest of the image (or tracklet frame) list and labels, to tell whether a file is
    up to date."""
    digest = hashlib.sha256()
    for s in samples:
        files = s.paths if isinstance(s, Tracklet) else (s.path,)
        names = "|".join(os.path.relpath(f, root) for f in files)
        digest.update(f"{names}\t{s.pid}\t{s.camid}\t{s.dsetid}\n".encode())
    return digest.hexdigest()


def is_up_to_date(path: Path, provenance: dict) -> bool:
    """True when ``path`` is a complete feature file made from the same inputs and options."""
    try:
        attrs = feature_file_info(path)["attrs"]
    except Exception:  # a missing, unreadable or foreign file is simply redone
        return False
    return attrs.get("complete") is True and attrs.get("provenance") == json.dumps(
        provenance, sort_keys=True
    )


class TorchRunner:
    """A PyTorch model as extraction runs it: on ``device``, in eval mode, with the
    options' flip, autocast and memory format."""

    def __init__(self, model, options: ExtractOptions, device: str) -> None:
        import torch

        self.model = model.to(device).eval()
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

    def forward(self, batch, ok: np.ndarray) -> np.ndarray:
        import torch

        pixels = torch.as_tensor(batch)[torch.from_numpy(ok)]
        return _forward(self.model, pixels, self.options, self.device)

    def frame_features(self, batch, ok: np.ndarray) -> list[np.ndarray]:
        """The trunk's features of the readable frames, and of their mirror images with
        the options' flip (the views a tracklet is pooled over)."""
        import torch

        pixels = torch.as_tensor(batch)[torch.from_numpy(ok)]
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
) -> dict[str, Any]:
    """Extract the features of ``samples`` into the feature file ``out`` with ``runner``
    (a :class:`TorchRunner`, or ONNX Runtime's :class:`reidkit.deploy.runtime.OnnxRunner`).

    With ``force`` the file is made again; the old one stays readable until the new one
    replaces it. With ``wait_for_lock`` a concurrent writer is waited for, else LockedError.

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
    provenance = {
        **attrs.get("provenance", {}),
        "images": samples_sha256(samples, root),
        "options": options.provenance(),
    }
    tracklets = kind_of(samples) == "tracklet"
    if tracklets and options.sample is None:
        raise UsageError("tracklets need the options' sample, seq_len and temporal")
    start = time.perf_counter()
    rank, world = distributed_rank()
    part = out if world == 1 else out.with_name(f"{out.name}.rank{rank}-of-{world}")
    with (
        file_lock(out, wait=wait_for_lock) if rank == 0 else contextlib.nullcontext(),
        file_lock(part) if part != out else contextlib.nullcontext(),
    ):
        up_to_date = not force and is_up_to_date(out, provenance)
        barrier()  # every process has decided before any of them writes
        if up_to_date:
            return {
                "file": str(out),
                "rows": feature_file_info(out)["rows"],
                "up_to_date": True,
                "skipped": [],
                "resumed": 0,
                "seconds": 0.0,
                "images_per_second": 0.0,
            }
        lo, hi = shard(len(samples), batch_size, rank, world)
        file_attrs = {
            **attrs,
            "provenance": provenance,
            "root": str(root),
            "image_size": [options.height, options.width],
            "mean": list(options.mean),
            "std": list(options.std),
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
    images = ImageList([s.path for s in samples[first:hi]], first, options.height, options.width)
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
    from reidkit.features.store import write_features

    sets = [read_features(p) for p in parts]
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


def output_path(out_dir: Path, dataset: str, subset: str) -> Path:
    """``DIR/<dataset>-<subset>.h5``."""
    return Path(out_dir) / f"{dataset}-{subset}.h5"


def extract_dataset(
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    dataset: str | None = None,
    root: str | os.PathLike[str] = "data",
    subsets: tuple[str, ...] = ("query", "gallery"),
    images: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str],
    height: int | None = None,
    width: int | None = None,
    device: str = "auto",
    model_options: dict[str, Any] | None = None,
    allow_partial: bool = False,
    onnx: str | os.PathLike[str] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    progress_factory=None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Extract features of a dataset's subsets (or a plain image folder) to feature files.

    The model comes from a checkpoint, or from ``model_name`` built with ``model_options``
    (random initialisation seeded by ``seed``, or ``weights``, which must load the whole
    model but its classifier unless ``allow_partial``), or is an exported ``onnx`` file run
    by ONNX Runtime (torch is not imported then). Image size and normalisation default to
    the checkpoint's, or to what the model or the ONNX file declares; ``mean`` and ``std``
    are for an ONNX file without reidkit's metadata.
    ``kwargs`` go to :func:`extract_subset` (batch_size, workers, skip_bad, force) and to
    :class:`ExtractOptions` (flip, storage, amp, channels_last; for a video dataset sample,
    seq_len and temporal, which default to ``all``, the checkpoint's ``data.seq_len`` and
    its ``model.temporal``).
    """
    sources = {"CHECKPOINT": checkpoint, "--model": model_name, "--onnx": onnx}
    given = [name for name, value in sources.items() if value is not None]
    if len(given) != 1:
        raise UsageError(
            "give one of CHECKPOINT, --model NAME or --onnx FILE"
            + (f", not {' and '.join(given)}" if given else "")
        )
    if (dataset is None) == (images is None):
        raise UsageError("give either --dataset or --images")
    if onnx is None and (mean is not None or std is not None):
        raise UsageError(
            f"--{'mean' if mean is not None else 'std'} is for --onnx files without reidkit "
            "metadata: a checkpoint or a model says how it was trained"
        )
    if checkpoint is not None and Path(checkpoint).is_file() and dataset is not None:
        unchanged = _unchanged_outputs(
            checkpoint, dataset, root, subsets, Path(out_dir), height, width, kwargs
        )
        if unchanged is not None:
            return {**unchanged, "device": device}
    option_keys = {"flip", "storage", "amp", "channels_last"}
    given = {k: kwargs.pop(k, None) for k in ("sample", "seq_len", "temporal")}
    video = {k: v for k, v in given.items() if v is not None}
    run_kwargs = {k: v for k, v in kwargs.items() if k not in option_keys}
    if onnx is not None:
        # the dataset first: an ONNX graph cannot pool tracklets, whatever the file holds
        jobs = image_jobs(dataset, root, subsets, images, Path(out_dir))
        _refuse_tracklets(jobs)
        weights_report = None
        runner, model_attrs, options = _onnx_runner(
            onnx, device, height, width, mean, std, model_options,
            {"--weights": weights is not None, "--seed": seed is not None,
             "--allow-partial": allow_partial},
            kwargs,
        )  # fmt: skip
        device = runner.device
        run_kwargs["workers"] = 0
    else:
        from reidkit.features.source import load_model_source

        source = load_model_source(
            checkpoint, model_name, weights=weights, seed=seed, height=height, width=width,
            model_options=model_options, allow_partial=allow_partial,
        )  # fmt: skip
        model_attrs, data, weights_report = source.attrs, source.data, source.weights_report
        jobs = image_jobs(dataset, root, subsets, images, Path(out_dir))  # after the model
    kind = kind_of(jobs[0][2])
    if kind == "image" and video:
        option = next(iter(video)).replace("_", "-")
        raise UsageError(f"--{option} is for video datasets, and {jobs[0][0]} holds images")
    if onnx is None:
        if kind == "tracklet":
            video = video_options(video, source.checkpoint)
        options = ExtractOptions(
            height=height or data["height"],
            width=width or data["width"],
            mean=list(data["mean"]),
            std=list(data["std"]),
            **{k: v for k, v in kwargs.items() if k in option_keys},
            **video,
        )
        options.check()  # before anything is locked or written
        device = init_distributed(resolve_device(device))
        if run_kwargs.get("workers", 0) < 0:
            run_kwargs["workers"] = 0 if device == "cpu" else min(8, thread_count())
        runner = TorchRunner(source.model, options, device)
    results = []
    for name, subset, samples, base, path, camera_base in jobs:
        attrs = {
            **model_attrs,
            "dataset": name,
            "subset": subset,
            "camera_base": camera_base,
            # what makes the features: not the config's text, not the advice on distances
            "provenance": {
                k: v for k, v in model_attrs.items() if k not in ("config", "distance", "onnx")
            },
        }
        progress = progress_factory(f"{name}-{subset}") if progress_factory else None
        result = extract_subset(
            runner,
            samples,
            path,
            root=base,
            attrs=attrs,
            options=options,
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


def _refuse_tracklets(jobs) -> None:
    if kind_of(jobs[0][2]) == "tracklet":
        raise UsageError(
            f"--onnx extracts images; {jobs[0][0]} holds tracklets",
            hint="an exported graph ends in the head, after which frames no longer pool as "
            "the model pools them: extract tracklets from the checkpoint",
        )


def video_options(given: dict[str, Any], checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """sample, seq_len and temporal of a tracklet extraction: as given, else ``all`` frames
    and the checkpoint's config (or the defaults of a new run); seq_len only with evenly."""
    from reidkit.config import Config

    config = (checkpoint or {}).get("config") or {}
    default = Config()
    sample = given.get("sample", "all")
    temporal = given.get(
        "temporal", config.get("model", {}).get("temporal", default.model.temporal)
    )
    seq_len = given.get("seq_len", config.get("data", {}).get("seq_len", default.data.seq_len))
    if sample == "all" and "seq_len" in given:
        raise UsageError("--seq-len is for --sample evenly: --sample all pools every frame")
    return {"sample": sample, "seq_len": seq_len if sample != "all" else None, "temporal": temporal}


def _onnx_runner(path, device, height, width, mean, std, model_options, refused, kwargs):
    """The ONNX Runtime side of :func:`extract_dataset`: what PyTorch alone does is refused."""
    from reidkit.deploy.runtime import onnx_extraction

    torch_only = {
        **refused,
        "--amp": kwargs.get("amp", "off") != "off",
        "--channels-last": kwargs.get("channels_last", False),
        **{f"--{k.replace('_', '-')}": v is not None for k, v in (model_options or {}).items()},
    }
    for option, given in torch_only.items():
        if given:
            raise UsageError(
                f"{option} is for PyTorch models: an ONNX graph is run as exported",
                hint="export with --half for float16",
            )
    if kwargs.get("workers", 0) > 0:
        raise UsageError(
            "--workers: with --onnx images are decoded in this process, between forward "
            "passes (torch's DataLoader is not used); leave --workers out"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--onnx runs in one process: start it without torchrun")
    runner, attrs, options = onnx_extraction(
        path, device=device, height=height, width=width, mean=mean, std=std,
        flip=kwargs.get("flip", False), storage=kwargs.get("storage", "float32"),
    )  # fmt: skip
    options.check()
    return runner, attrs, options


def _unchanged_outputs(checkpoint, dataset, root, subsets, out_dir: Path, height, width, kwargs):
    """The result of a rerun with nothing to do, decided without torch or the model (a cron
    job's rerun costs a fraction of a second); None when any file needs work.

    A file is unchanged when it is complete and was made from a checkpoint with the same
    sha256, from the same images, with the options asked for now.
    """
    from reidkit.engine.checkpoint import file_sha256

    if kwargs.get("force") or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    asked = {"height": height, "width": width}
    asked.update({k: kwargs[k] for k in ("flip", "storage", "amp", "channels_last") if k in kwargs})
    asked.update({k: kwargs.get(k) for k in ("sample", "seq_len", "temporal")})
    try:
        jobs = image_jobs(dataset, root, subsets, None, out_dir)
    except ReidkitError:  # the full path reports it, in its usual order
        return None
    sha, files, options = None, [], {}
    for _, subset, samples, base, path, _ in jobs:
        try:
            info = feature_file_info(path)
            attrs = info["attrs"]
            provenance = json.loads(attrs["provenance"])
        except Exception:  # missing, unreadable or foreign: it needs work
            return None
        sha = sha or file_sha256(checkpoint)
        options = provenance.get("options", {})
        if (
            attrs.get("complete") is not True
            or "onnx_sha256" in provenance  # made by ONNX Runtime: not this checkpoint's run
            or provenance.get("checkpoint_sha256") != sha
            or provenance.get("images") != samples_sha256(samples, base)
            or any(v is not None and options.get(k) != v for k, v in asked.items())
        ):
            return None
        files.append(
            {
                "subset": subset,
                "file": str(path),
                "rows": info["rows"],
                "up_to_date": True,
                "skipped": [],
                "resumed": 0,
                "seconds": 0.0,
                "images_per_second": 0.0,
            }
        )
    return {"files": files, "weights": None, "options": options}


def image_jobs(dataset, root, subsets, images, out_dir: Path):
    """(dataset name, subset, samples, root of the paths, output file, camera base) per file
    to write."""
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
                0,
            )
        ]
    ds = load_dataset(dataset, root)
    jobs = []
    for subset in subsets:
        if subset not in ("train", "query", "gallery"):
            raise UsageError(f"unknown subset {subset!r}; choose from train, query, gallery")
        if not ds.subset(subset):  # checked for every subset before any is extracted
            raise UsageError(f"nothing to extract: {ds.name} has no {subset} images")
        jobs.append(
            (
                ds.name,
                subset,
                ds.subset(subset),
                ds.root,
                output_path(out_dir, ds.name, subset),
                ds.camera_base,
            )
        )
    return jobs


def compute_features(
    model,
    samples: list[Sample],
    options: ExtractOptions,
    *,
    device: str = "cpu",
    batch_size: int = 128,
) -> np.ndarray:
    """Features of ``samples`` in memory, as ``extract`` computes them (for evaluation
    during training). An unreadable image is a DataError naming it. Tracklets get a row
    each, pooled as the options say."""
    import torch

    if kind_of(samples) == "tracklet":
        runner = TorchRunner(model, options, device)
        return compute_tracklet_features(runner, samples, options, batch_size=batch_size)
    images = ImageList([s.path for s in samples], 0, options.height, options.width)
    parts = []
    for batch, index, errors in batches_in_process(images, batch_size):
        for i, error in zip(index.tolist(), errors, strict=True):
            if error:
                raise DataError(f"cannot read image {samples[i].path}: {error}")
        parts.append(_forward(model, torch.from_numpy(batch), options, device))
    return np.concatenate(parts) if parts else np.zeros((0, model.feature_dim), np.float32)
