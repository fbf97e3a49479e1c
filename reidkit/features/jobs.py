"""What ``reidkit extract`` extracts: the feature files of a dataset's subsets (or of a
folder of images), with which model and runner, and whether they are already up to date.

The rows themselves are computed by :func:`reidkit.features.extractor.extract_subset`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from reidkit.data.sample import Sample, kind_of
from reidkit.device import distributed_rank, init_distributed, resolve_device
from reidkit.errors import ReidkitError, UsageError
from reidkit.features.extractor import TorchRunner, extract_subset, up_to_date_result
from reidkit.features.options import ExtractOptions, file_provenance, is_current
from reidkit.features.store import feature_file_info
from reidkit.fileio import file_lock
from reidkit.progress import no_progress
from reidkit.threads import thread_count

log = logging.getLogger(__name__)
VIDEO_KEYS = ("sample", "seq_len", "temporal")
# what makes the features is not provenance: the config's text (its data and video defaults
# are resolved into the options), the advice on distances, where the checkpoint or the ONNX
# file lies (their sha256 say which they are)
NOT_PROVENANCE = ("config", "distance", "checkpoint", "onnx")


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
    options: ExtractOptions | None = None,
    device: str = "auto",
    model_options: dict[str, Any] | None = None,
    allow_partial: bool = False,
    config: str | os.PathLike[str] | None = None,
    onnx: str | os.PathLike[str] | None = None,
    runtime: str | None = None,
    batch_size: int = 128,
    workers: int = 0,
    skip_bad: bool = False,
    force: bool = False,
    wait_for_lock: bool = False,
    progress_factory=None,
) -> dict[str, Any]:
    """Extract features of a dataset's subsets (or a plain image folder) to feature files.

    The model comes from a checkpoint, or from ``model_name`` built with ``model_options``
    (random initialisation seeded by ``seed``, or ``weights``, which must load the whole
    model but its classifier unless ``allow_partial``), or from a fast-reid file given as
    ``weights`` alone (with its ``config``.yaml), or is an exported ``onnx`` file run
    by ONNX Runtime, or by OpenVINO with ``runtime`` "openvino" (torch is not imported
    then). ``options`` say what the features are
    made with (:class:`ExtractOptions`; what they leave unset comes from the model: image
    size and normalisation from the checkpoint, or what the model or the ONNX file
    declares; for a video dataset ``all`` frames, the checkpoint's ``data.seq_len`` and
    ``model.temporal``). ``batch_size``, ``workers`` (-1: none on the CPU, up to 8 with a
    GPU), ``skip_bad``, ``force`` and ``wait_for_lock`` say how it runs
    (:func:`extract_subset`).
    """
    options = options or ExtractOptions()
    sources = {"CHECKPOINT": checkpoint, "--model": model_name, "--onnx": onnx}
    named = [name for name, value in sources.items() if value is not None]
    if len(named) != 1 and (named or weights is None):  # a fast-reid file says its model
        raise UsageError(
            "give one of CHECKPOINT, --model NAME (or --weights FILE of fast-reid) or --onnx FILE"
            + (f", not {' and '.join(named)}" if named else "")
        )
    if (dataset is None) == (images is None):
        raise UsageError("give either --dataset or --images")
    if runtime is not None and onnx is None:
        raise UsageError(
            f"--runtime {runtime} runs an exported graph: give --onnx FILE",
            hint="reidkit export writes one; a checkpoint or --model runs in PyTorch",
        )
    if onnx is None and (options.mean is not None or options.std is not None):
        raise UsageError(
            f"--{'mean' if options.mean is not None else 'std'} is for --onnx files without "
            "reidkit metadata: a checkpoint or a model says how it was trained"
        )
    options.check()
    if onnx is None:  # what runs the model is part of what makes the features
        device = resolve_device(device)
    run = {"batch_size": batch_size, "workers": workers, "skip_bad": skip_bad,
           "force": force, "wait_for_lock": wait_for_lock}  # fmt: skip
    quick = checkpoint is not None and dataset is not None and not force
    if quick and Path(checkpoint).is_file():
        unchanged = _unchanged_outputs(
            checkpoint, dataset, root, subsets, Path(out_dir), options, device
        )
        if unchanged is not None:
            return {**unchanged, "device": device}
    if onnx is not None:
        # the dataset first: an ONNX graph cannot pool tracklets, whatever the file holds
        jobs = image_jobs(dataset, root, subsets, images, Path(out_dir))
        _refuse_tracklets(jobs)
        weights_report = None
        runner, model_attrs, resolved = _onnx_runner(
            onnx, runtime or "onnxruntime", device, options, model_options, workers,
            {"--weights": weights is not None, "--seed": seed is not None,
             "--allow-partial": allow_partial, "--config": config is not None},
        )  # fmt: skip
        device = resolved.device = runner.device
        run["workers"] = 0
    else:
        from reidkit.features.source import load_model_source

        source = load_model_source(
            checkpoint, model_name, weights=weights, seed=seed, height=options.height,
            width=options.width, model_options=model_options, allow_partial=allow_partial,
            config=config,
        )  # fmt: skip
        model_attrs, weights_report = source.attrs, source.weights_report
        jobs = image_jobs(dataset, root, subsets, images, Path(out_dir))  # after the model
    _refuse_video_options(jobs, options)
    if onnx is None:
        kind = kind_of(jobs[0][2])
        resolved = resolve_options(
            kind, source.data, source.checkpoint, options, device, source.attrs["model"]
        )
        _warn_long_clips(jobs, resolved)
        device = init_distributed(device)
        if workers < 0:
            run["workers"] = 0 if device == "cpu" else min(8, thread_count())
        runner = TorchRunner(source.model, resolved, device)
    results = []
    with contextlib.ExitStack() as locks:
        # every file's lock before the first is written, in one order: a run holds all of
        # its outputs or waits (or stops, 75) before writing any, so a run started later
        # cannot take a file between two of this one's
        if distributed_rank()[0] == 0:
            for path in sorted({job[4] for job in jobs}):
                locks.enter_context(file_lock(path, wait=wait_for_lock))
        for name, subset, samples, base, path, camera_base in jobs:
            attrs = file_attrs(model_attrs, name, subset, camera_base)
            progress = progress_factory(f"{name}-{subset}") if progress_factory else None
            result = extract_subset(
                runner,
                samples,
                path,
                root=base,
                attrs=attrs,
                options=resolved,
                progress=progress or no_progress,
                locked=True,
                **run,
            )
            results.append({"subset": subset, **result})
    return {
        "files": results,
        "weights": weights_report,
        "device": device,
        "options": asdict(resolved),
    }


def file_attrs(
    model_attrs: dict[str, Any], dataset: str, subset: str, camera_base: int
) -> dict[str, Any]:
    """The attrs of one feature file: the model's, the dataset's, and the model's part of
    the provenance (:func:`reidkit.features.options.file_provenance` adds the rest)."""
    return {
        **model_attrs,
        "dataset": dataset,
        "subset": subset,
        "camera_base": camera_base,
        "provenance": {k: v for k, v in model_attrs.items() if k not in NOT_PROVENANCE},
    }


def resolve_options(
    kind: str,
    data: dict[str, Any],
    checkpoint: dict[str, Any] | None,
    options: ExtractOptions,
    device: str | None,
    model: str,
) -> ExtractOptions:
    """The ``options`` of a PyTorch extraction with every unset field filled in: ``data``
    (the image size and normalisation a checkpoint was trained with, see
    :func:`reidkit.models.checkpoint.data_config`, or those a model declares), for
    tracklets the checkpoint's pooling (:func:`video_options`), the kind of ``device``
    that runs the model, and PyTorch's inference form for ``model`` (:func:`inference_form`).

    The one resolution both the rerun check without torch and the extraction itself use,
    so that both compare a file with the same options.
    """
    resolved = replace(
        options,
        height=options.height or data["height"],
        width=options.width or data["width"],
        mean=list(data["mean"]),
        std=list(data["std"]),
        interpolation=options.interpolation or data.get("interpolation", "bilinear"),
        **(video_options(options, checkpoint) if kind == "tracklet" else {}),
        device=device.split(":")[0] if device else None,
        **inference_form(options, device, model),
    )
    resolved.check()  # before anything is locked or written
    return resolved


def inference_form(options: ExtractOptions, device: str | None, model: str) -> dict[str, bool]:
    """PyTorch's fastest exact form where the options leave it open: BatchNorm folded, and
    on the CPU the memory format the model's family runs fastest in (its declaration's
    ``cpu_channels_last``, measured: docs/benchmarks.md). On CUDA, where nothing has been
    measured yet, contiguous."""
    from reidkit.models.spec import MODELS

    channels_last = options.channels_last
    if channels_last is None:
        on_cpu = (device or "cpu").split(":")[0] == "cpu"
        channels_last = on_cpu and MODELS.get(model).cfg.cpu_channels_last
    return {
        "channels_last": channels_last,
        "fold_bn": True if options.fold_bn is None else options.fold_bn,
    }


def _warn_long_clips(jobs, options: ExtractOptions) -> None:
    """--sample evenly with a seq_len above a tracklet's frames repeats its frames: say so
    when that makes the work larger than pooling every frame would."""
    if options.sample != "evenly":
        return
    lengths = [len(t.paths) for job in jobs for t in job[2]]
    short = sum(n < options.seq_len for n in lengths)
    if short and options.seq_len * len(lengths) > sum(lengths):
        log.warning(
            "--seq-len %d is more than the frames of %d of %d tracklets (the longest has %d): "
            "their frames are repeated, %.1fx the frames of --sample all",
            options.seq_len, short, len(lengths), max(lengths),
            options.seq_len * len(lengths) / sum(lengths),
        )  # fmt: skip


def _refuse_video_options(jobs, options: ExtractOptions) -> None:
    video = [k for k in VIDEO_KEYS if getattr(options, k) is not None]
    if video and kind_of(jobs[0][2]) == "image":
        option = video[0].replace("_", "-")
        raise UsageError(f"--{option} is for video datasets, and {jobs[0][0]} holds images")


def _refuse_tracklets(jobs) -> None:
    if kind_of(jobs[0][2]) == "tracklet":
        raise UsageError(
            f"--onnx extracts images; {jobs[0][0]} holds tracklets",
            hint="an exported graph ends in the head, after which frames no longer pool as "
            "the model pools them: extract tracklets from the checkpoint",
        )


def video_options(options: ExtractOptions, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """sample, seq_len and temporal of a tracklet extraction: as the options give them,
    else ``all`` frames and the checkpoint's config (or the defaults of a new run); seq_len
    only with evenly."""
    from reidkit.config import Config

    config = (checkpoint or {}).get("config") or {}
    default = Config()
    sample = options.sample or "all"
    temporal = options.temporal or config.get("model", {}).get("temporal", default.model.temporal)
    seq_len = options.seq_len or config.get("data", {}).get("seq_len", default.data.seq_len)
    if sample == "all" and options.seq_len is not None:
        raise UsageError("--seq-len is for --sample evenly: --sample all pools every frame")
    return {"sample": sample, "seq_len": seq_len if sample != "all" else None, "temporal": temporal}


_ONNX_HINTS = {  # what to do instead of a PyTorch option given with --onnx
    "--amp": "reidkit export --half makes a float16 graph",
    "--channels-last": "ONNX Runtime picks its own memory layout: leave it out",
    "--fold-bn": "ONNX Runtime folds BatchNorm itself: leave it out",
    "model": "the graph's weights and options are fixed when it is exported: give them to "
    "reidkit export (--model NAME --weights FILE ...), then extract --onnx that file",
}


def _onnx_runner(
    path, runtime: str, device, options: ExtractOptions, model_options, workers: int, refused
):
    """The exported graph's side of :func:`extract_dataset` (ONNX Runtime or OpenVINO):
    what PyTorch alone does is refused."""
    from reidkit.deploy.runtime import onnx_extraction

    switches = {"channels_last": options.channels_last, "fold_bn": options.fold_bn}
    torch_only = {
        **refused,
        "--amp": options.amp != "off",
        **{
            f"--{'no-' if v is False else ''}{k.replace('_', '-')}": v is not None
            for k, v in {**switches, **(model_options or {})}.items()
        },
    }
    for option, given in torch_only.items():
        if given:
            raise UsageError(
                f"{option} is for PyTorch models: an ONNX graph is run as exported",
                hint=_ONNX_HINTS.get(option.replace("--no-", "--"), _ONNX_HINTS["model"]),
            )
    if workers > 0:
        raise UsageError(
            "--workers: with --onnx images are decoded in this process, between forward "
            "passes (torch's DataLoader is not used); leave --workers out"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--onnx runs in one process: start it without torchrun")
    runner, attrs, resolved = onnx_extraction(path, device=device, options=options, runtime=runtime)
    resolved.check()
    return runner, attrs, resolved


def _unchanged_outputs(
    checkpoint, dataset, root, subsets, out_dir: Path, options: ExtractOptions, device: str
):
    """The result of a rerun with nothing to do, decided without torch or the model (a cron
    job's rerun costs a fraction of a second); None when any file needs work, or when this
    cannot tell (the extraction then decides, by the same rule).

    A file made from a checkpoint with the same sha256 holds that checkpoint's config and
    model attrs, so this run's options are resolved from them as the extraction resolves
    them, and the file is current when its provenance equals this run's
    (:func:`reidkit.features.options.is_up_to_date`).
    """
    from reidkit.fileio import file_sha256
    from reidkit.models.checkpoint import data_config

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    sha, files, resolved = None, [], None
    try:
        jobs = image_jobs(dataset, root, subsets, None, out_dir)
        _refuse_video_options(jobs, options)
        for name, subset, samples, base, path, camera_base in jobs:
            try:
                info = feature_file_info(path)  # the one read of the file
            except Exception:  # missing, unreadable or foreign: it needs work
                return None
            sha = sha or file_sha256(checkpoint)
            recorded = _recorded_checkpoint(info["attrs"], checkpoint, sha)
            if recorded is None:
                return None
            model_attrs, ckpt = recorded
            resolved = resolve_options(
                kind_of(samples), data_config(ckpt), ckpt, options, device, model_attrs["model"]
            )
            attrs = file_attrs(model_attrs, name, subset, camera_base)
            if not is_current(info["attrs"], file_provenance(attrs, samples, base, resolved)):
                return None
            files.append({"subset": subset, **up_to_date_result(path, info["rows"])})
    except ReidkitError:  # the extraction reports it, in its usual order
        return None
    return {"files": files, "weights": None, "options": asdict(resolved)}


def _recorded_checkpoint(attrs: dict[str, Any], checkpoint, sha: str):
    """(model attrs, checkpoint with its config) as
    :func:`reidkit.features.source.load_model_source` gives them for ``checkpoint``, read
    from the attrs of a file made from it; None when the file was not made from a
    checkpoint with this sha256 (the config in the file is then not this checkpoint's)."""
    try:
        provenance = json.loads(attrs["provenance"])
    except (KeyError, TypeError, ValueError):
        return None
    config = attrs.get("config")
    if provenance.get("checkpoint_sha256") != sha or not isinstance(config, dict):
        return None
    model_attrs = {
        "model": attrs.get("model"),
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha,
        "config": config,
        "model_options": attrs.get("model_options"),
        "distance": attrs.get("distance"),
    }
    return model_attrs, {"config": config}


def image_jobs(dataset, root, subsets, images, out_dir: Path):
    """(dataset name, subset, samples, root of the paths, output file, camera base) per file
    to write."""
    from reidkit.data import load_dataset
    from reidkit.data.layouts.market import IMAGE_SUFFIXES

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
    if not subsets:
        raise UsageError("--subsets: name at least one of train, query, gallery")
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
