"""``reidkit export``: a checkpoint as a verified ONNX file for deployment."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from reidkit.cli import output
from reidkit.cli.extract import ModelOpt, SeedOpt, WeightsOpt
from reidkit.cli.options import (
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
    complete_dataset,
)
from reidkit.errors import UsageError
from reidkit.threads import configure as configure_threads


def export(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            help="A reidkit checkpoint (.pt), or a run directory (its weights/best.pt, else "
            "weights/last.pt); or use --model.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", help="The ONNX file to write.", dir_okay=False, show_default=False),
    ] = ...,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    seed: SeedOpt = None,
    bnneck: BnneckOpt = None,
    last_stride: LastStrideOpt = None,
    stem_pool: StemPoolOpt = None,
    config: FastreidConfigOpt = None,
    allow_partial: AllowPartialOpt = False,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset to write.")] = 18,
    batch: Annotated[
        str,
        typer.Option("--batch", help="'dynamic' (any batch size), or a fixed batch size N."),
    ] = "dynamic",
    height: Annotated[
        int | None,
        typer.Option("--height", show_default=False, help="Input height (default: the model's)."),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option("--width", show_default=False, help="Input width (default: the model's)."),
    ] = None,
    flip: Annotated[
        bool,
        typer.Option("--flip", help="Fold flip averaging into the graph (as extract --flip)."),
    ] = False,
    half: Annotated[
        bool, typer.Option("--half", help="Run the model in float16 (output float32).")
    ] = False,
    input_format: Annotated[
        str,
        typer.Option(
            "--input",
            help="uint8: RGB pixels 0-255, NCHW, resized (the graph standardises them); "
            "float: float32 NCHW already standardised with the model's mean and std.",
        ),
    ] = "uint8",
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Quantise the graph to INT8 (ONNX Runtime, static), calibrated on training "
            "images of the checkpoint's dataset or --dataset, and kept only if its mAP on that "
            "dataset's query and gallery stays within --max-map-drop of the fp32 graph's.",
        ),
    ] = False,
    calibration_images: Annotated[
        int | None,
        typer.Option(
            "--calibration-images",
            show_default=False,
            help="With --int8: training images to calibrate on (default 256).",
        ),
    ] = None,
    max_map_drop: Annotated[
        float | None,
        typer.Option(
            "--max-map-drop",
            min=0.0,
            show_default=False,
            help="With --int8: points of mAP the INT8 graph may lose (default 1).",
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            file_okay=False,
            show_default=False,
            help="Verify on crops from this folder (default: the checkpoint's dataset).",
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            autocompletion=complete_dataset,
            show_default=False,
            help="Verify on this dataset's query and gallery images (with --int8: also "
            "calibrate on its training images and check retrieval on its query and gallery).",
        ),
    ] = None,
    root: RootOpt = None,
    tolerance: Annotated[
        float | None,
        typer.Option(
            "--tolerance",
            min=0.0,
            show_default=False,
            help="Largest difference from PyTorch allowed, on the features' scale "
            "(default 1e-4, 1e-2 with --half).",
        ),
    ] = None,
    force: ForceOpt = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Export a model to ONNX, verified against PyTorch with ONNX Runtime before it is
    written."""
    output.setup(quiet, verbose)
    configure_threads(threads)
    from reidkit.cli.signals import finishing
    from reidkit.deploy import export as onnx_export
    from reidkit.deploy import quantize
    from reidkit.deploy.verify import verification_images
    from reidkit.features.source import load_model_source

    onnx_export.import_onnx()  # before any work: without the extra, say how to install it
    options = onnx_export.ExportOptions(
        opset, batch, height, width, flip, half, input_format, int8=int8
    )
    options.check()
    for name, value in (("--calibration-images", calibration_images),
                        ("--max-map-drop", max_map_drop)):  # fmt: skip
        if value is not None and not int8:
            raise UsageError(f"{name} applies to an --int8 export only")
    if checkpoint is not None:
        checkpoint = onnx_export.checkpoint_of(checkpoint)
    source = load_model_source(
        checkpoint, model, weights=weights, seed=seed, height=height, width=width,
        model_options={"bnneck": bnneck, "last_stride": last_stride, "stem_pool": stem_pool},
        allow_partial=allow_partial, config=config,
    )  # fmt: skip
    trained_with = (source.checkpoint or {}).get("config")
    calibration = None
    if int8:
        calibration = quantize.calibration_source(
            dataset=dataset, root=root, config=trained_with,
            images=calibration_images,
        )  # fmt: skip
    limit = quantize.MAX_MAP_DROP if max_map_drop is None else max_map_drop
    info = onnx_export.deploy_info(source, options, calibration)
    current = onnx_export.is_current(out, info, opset, force=force)
    if current and int8:  # a check that cannot be read: quantised again
        recorded = onnx_export.int8_check_of(out)
        current = recorded is not None
    if current:
        result = {"file": str(out), "up_to_date": True, "opset": opset, **asdict(info)}
        if int8:  # made with these options: its recorded check must meet this limit too
            result["int8_check"] = recorded
            quantize.enforce_map_drop(
                recorded, limit, f"{out} was left as it is (--force quantises again)"
            )
        output.render(result, as_json, export_report)
        return
    paths, where = verification_images(
        images=images, dataset=dataset, root=root, config=trained_with
    )
    with output.progress_factory() as progress_factory:
        built = onnx_export.build_export(
            source, options, verify_on=paths, tolerance=tolerance, calibration=calibration,
            max_map_drop=limit, progress_factory=progress_factory,
        )  # fmt: skip
    with finishing():  # the verified file and its report go together, interrupt or not
        result = built.write(out)
        result["verification"]["source"] = where
        output.render(result, as_json, export_report)


def export_report(r: dict) -> str:
    if r["up_to_date"]:
        return f"{r['file']} is up to date (the same weights and options); --force exports it again"
    v = r["verification"]
    shape = f"{r['input_format']} NCHW 3x{r['height']}x{r['width']}"
    sha = r["checkpoint_sha256"][:12] or "random weights"
    batches = " and ".join(str(b) for b in v["batch_sizes"])
    return "\n".join(
        [
            f"wrote {r['file']}: {r['model']} ({sha}), {r['bytes'] / 1e6:.1f} MB, opset "
            f"{r['opset']}, batch {r['batch']}, {shape} in, {r['feature_dim']}-d features out"
            + (", flip folded in" if r["flip"] else "")
            + (", float16" if r["half"] else "")
            + (", INT8" if r["int8"] else ""),
            f"verified on {v['images']} images of {v['source']} at batch {batches} with "
            f"{v['runtime']} ({v['provider']}): largest difference {v['max_abs_diff']:.2e} "
            f"(features up to {v['feature_scale']:.3g}), lowest cosine {v['min_cosine']:.7f}; "
            f"tolerance {v['tolerance']:g}" + (" (the fp32 graph)" if r["int8"] else ""),
            *([int8_report(v["int8"])] if r["int8"] else []),
        ]
    )


def int8_report(q: dict) -> str:
    c, check = q["calibration"], q["retrieval"]
    return (
        f"quantised to INT8, calibrated ({c['method']}) on {c['used']} training images of "
        f"{c['dataset']}: mAP {100 * check['mAP_int8']:.2f}% against "
        f"{100 * check['mAP_fp32']:.2f}% in fp32 on its {check['query']} query and "
        f"{check['gallery']} gallery images (a drop of {check['mAP_drop_points']:.2f} points; "
        f"limit {check['max_map_drop_points']:g}); lowest cosine to the fp32 graph's "
        f"features {q['min_cosine_to_fp32']:.4f}"
    )
