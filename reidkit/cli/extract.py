"""``reidkit extract``: features of a dataset's images (or tracklets), from a checkpoint,
into HDF5 files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reidkit.cli import output
from reidkit.cli.evaluate import DeviceOpt
from reidkit.cli.models import complete_model
from reidkit.cli.options import (
    DEFAULT_ROOT,
    AllowPartialOpt,
    BnneckOpt,
    FastreidConfigOpt,
    ForceOpt,
    JsonOpt,
    LastStrideOpt,
    QuietOpt,
    RootOpt,
    StemPoolOpt,
    ThreadsOpt,
    VerboseOpt,
    WaitForLockOpt,
    complete_dataset,
)
from reidkit.errors import UsageError
from reidkit.threads import configure as configure_threads

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="A registered model instead of a checkpoint (random weights "
        "seeded by --seed, or --weights).",
        autocompletion=complete_model,
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        help="Weights for --model: a state dict, a reidkit or torchreid checkpoint; all of "
        "the model but its classifier must load. A fast-reid checkpoint needs no --model: "
        "the file says its model.",
        dir_okay=False,
        show_default=False,
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", show_default=False, help="Seed of --model's random weights (0)."),
]


def extract(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            help="A reidkit checkpoint (.pt); or use --model.", dir_okay=False, show_default=False
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="Dataset name, Market-style folder or manifest.",
            autocompletion=complete_dataset,
            envvar="REIDKIT_DATASET",
            show_default=False,
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="A plain folder of crops instead of a dataset (labels -1).",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    root: RootOpt = DEFAULT_ROOT,
    subsets: Annotated[
        str, typer.Option("--subsets", help="Comma-separated subsets.", envvar="REIDKIT_SUBSETS")
    ] = "query,gallery",
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for the feature files.", file_okay=False, envvar="REIDKIT_OUT"
        ),
    ] = Path("feats"),
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    seed: SeedOpt = None,
    bnneck: BnneckOpt = None,
    last_stride: LastStrideOpt = None,
    stem_pool: StemPoolOpt = None,
    config: FastreidConfigOpt = None,
    allow_partial: AllowPartialOpt = False,
    onnx: Annotated[
        Path | None,
        typer.Option(
            "--onnx",
            help="An ONNX file from 'reidkit export', run with ONNX Runtime instead of "
            "PyTorch (torch is not imported).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            help="What runs the --onnx file: onnxruntime (the default), or openvino (the "
            "[openvino] extra; CPU, float32; faster for INT8 graphs).",
            show_default=False,
        ),
    ] = None,
    mean: Annotated[
        str | None,
        typer.Option(
            "--mean",
            help="For an --onnx file without reidkit metadata: per-channel mean on the 0-1 "
            "scale, e.g. 0.485,0.456,0.406.",
            show_default=False,
        ),
    ] = None,
    std: Annotated[
        str | None,
        typer.Option(
            "--std",
            help="For an --onnx file without reidkit metadata: per-channel std, e.g. "
            "0.229,0.224,0.225.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", min=1, envvar="REIDKIT_BATCH_SIZE", help="Images per forward pass."
        ),
    ] = 128,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=-1,
            envvar="REIDKIT_WORKERS",
            help="DataLoader worker processes; -1: none on the CPU (decoding in turn with "
            "the model is fastest there), up to 8 with a GPU.",
        ),
    ] = -1,
    height: Annotated[
        int | None,
        typer.Option(
            "--height",
            min=1,
            show_default=False,
            help="Input height (default: the checkpoint's, or the model's).",
        ),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option(
            "--width",
            min=1,
            show_default=False,
            help="Input width (default: the checkpoint's, or the model's).",
        ),
    ] = None,
    flip: Annotated[bool, typer.Option("--flip", help="Average with the mirrored image.")] = False,
    storage: Annotated[
        str, typer.Option("--storage", help="float32 or float16 on disk.")
    ] = "float32",
    amp: Annotated[str, typer.Option("--amp", help="off, bf16 or fp16 autocast.")] = "off",
    channels_last: Annotated[
        bool | None,
        typer.Option(
            "--channels-last/--no-channels-last",
            show_default=False,
            help="channels_last memory format (default: on the CPU, where it is faster).",
        ),
    ] = None,
    fold_bn: Annotated[
        bool | None,
        typer.Option(
            "--fold-bn/--no-fold-bn",
            show_default=False,
            help="Fold each BatchNorm into the convolution before it for inference (default; "
            "the model's file is unchanged).",
        ),
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad", help="Leave unreadable images out (listed in the file and the JSON)."
        ),
    ] = False,
    sample: Annotated[
        str | None,
        typer.Option(
            "--sample",
            help="Video: the frames a tracklet's feature pools, all (default) or --seq-len "
            "spread evenly.",
            show_default=False,
        ),
    ] = None,
    seq_len: Annotated[
        int | None,
        typer.Option(
            "--seq-len",
            min=1,
            help="Video: frames per tracklet with --sample evenly (default: the checkpoint's "
            "data.seq_len).",
            show_default=False,
        ),
    ] = None,
    temporal: Annotated[
        str | None,
        typer.Option(
            "--temporal",
            help="Video: pool frame features by avg or max (default: the checkpoint's "
            "model.temporal).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    wait_for_lock: WaitForLockOpt = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Extract features of a dataset's subsets into OUT/<dataset>-<subset>.h5."""
    from reidkit.features.jobs import extract_dataset
    from reidkit.features.options import ExtractOptions

    output.setup(quiet or not output.is_main_process(), verbose)
    configure_threads(threads)
    options = ExtractOptions(
        height=height, width=width, mean=channels("--mean", mean), std=channels("--std", std),
        flip=flip, storage=storage, amp=amp, channels_last=channels_last, fold_bn=fold_bn,
        sample=sample, seq_len=seq_len, temporal=temporal,
    )  # fmt: skip
    with output.progress_factory() as progress_factory:
        result = extract_dataset(
            checkpoint=checkpoint,
            model_name=model,
            weights=weights,
            seed=seed,
            dataset=dataset,
            root=root,
            images=images,
            subsets=tuple(s.strip() for s in subsets.split(",") if s.strip()),
            out_dir=out,
            options=options,
            device=device,
            model_options={"bnneck": bnneck, "last_stride": last_stride, "stem_pool": stem_pool},
            allow_partial=allow_partial,
            config=config,
            onnx=onnx,
            runtime=runtime,
            batch_size=batch_size,
            workers=workers,
            skip_bad=skip_bad,
            force=force,
            wait_for_lock=wait_for_lock,
            progress_factory=progress_factory,
        )
    if output.is_main_process():
        output.render(result, as_json, extract_report)


def channels(option: str, text: str | None) -> list[float] | None:
    """Three comma-separated numbers, as --mean and --std take them."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or (option == "--std" and min(values) <= 0):
        raise UsageError(f"{option} {text}: give three numbers (R,G,B), e.g. 0.485,0.456,0.406")
    return values


def extract_report(result: dict) -> str:
    lines = []
    w = result.get("weights")
    if w:
        lines.append(
            f"weights: {w['used']} tensors loaded, {w['skipped']} of the file skipped, "
            f"{w['missing']} of the model left as initialised"
            + (f" ({w['missing_by_module']})" if w["missing"] else "")
        )
    for f in result["files"]:
        if f["up_to_date"]:
            lines.append(f"{f['file']} is up to date ({f['rows']} rows); --force redoes it")
        else:
            video = "skipped_frames" in f
            lines.append(
                f"wrote {f['file']}: {f['rows']} {'tracklets' if video else 'rows'} x "
                f"{f['feature_dim']}, {f['images_per_second']:.0f} "
                f"{'frames' if video else 'images'}/s"
                + (f", {len(f['skipped'])} skipped" if f["skipped"] else "")
                + (
                    f", {len(f['skipped_frames'])} frames skipped"
                    if f.get("skipped_frames")
                    else ""
                )
                + (f", resumed after {f['resumed']}" if f["resumed"] else "")
            )
    return "\n".join(lines)
