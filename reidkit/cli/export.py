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
            help="Verify on this dataset's query and gallery images.",
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
    from reidkit.deploy.verify import verification_images
    from reidkit.features.source import load_model_source

    onnx_export.import_onnx()  # before any work: without the extra, say how to install it
    options = onnx_export.ExportOptions(opset, batch, height, width, flip, half, input_format)
    options.check()
    if checkpoint is not None:
        checkpoint = onnx_export.checkpoint_of(checkpoint)
    source = load_model_source(
        checkpoint, model, weights=weights, seed=seed, height=height, width=width,
        model_options={"bnneck": bnneck, "last_stride": last_stride, "stem_pool": stem_pool},
        allow_partial=allow_partial, config=config,
    )  # fmt: skip
    info = onnx_export.deploy_info(source, options)
    if onnx_export.is_current(out, info, opset, force=force):
        current = {"file": str(out), "up_to_date": True, "opset": opset, **asdict(info)}
        output.render(current, as_json, export_report)
        return
    paths, where = verification_images(
        images=images,
        dataset=dataset,
        root=root,
        config=(source.checkpoint or {}).get("config"),
    )
    built = onnx_export.build_export(source, options, verify_on=paths, tolerance=tolerance)
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
            + (", float16" if r["half"] else ""),
            f"verified on {v['images']} images of {v['source']} at batch {batches} with "
            f"{v['runtime']} ({v['provider']}): largest difference {v['max_abs_diff']:.2e} "
            f"(features up to {v['feature_scale']:.3g}), lowest cosine {v['min_cosine']:.7f}; "
            f"tolerance {v['tolerance']:g}",
        ]
    )
