"""``reidkit models``: the registered models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reidkit.cli import output
from reidkit.cli.options import (
    AllowPartialOpt,
    BnneckOpt,
    FastreidConfigOpt,
    ForceOpt,
    JsonOpt,
    LastStrideOpt,
    QuietOpt,
    StemPoolOpt,
    VerboseOpt,
)

app = typer.Typer(
    help="List the registered models; import weights from elsewhere as a checkpoint.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def complete_model(incomplete: str) -> list[str]:
    from reidkit.models.factory import list_models

    return [n for n in list_models() if n.startswith(incomplete)]


@app.command("list")
def list_(
    pattern: Annotated[
        str | None, typer.Argument(help="Glob pattern, e.g. 'osnet*'.", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Each model: parameters, feature dimension, GFLOPs (at 256x128), input size, distance,
    options, and where its ImageNet weights come from and whether they are cached."""
    from reidkit.models import model_info
    from reidkit.models.factory import match_models

    output.setup(quiet, verbose)
    infos = [model_info(name) for name in match_models(pattern)]
    output.render({"models": infos}, as_json, models_table)


def models_table(listing: dict):
    from rich.table import Table

    table = Table()
    columns = ("model", "params (M)", "dim", "GFLOPs", "input", "distance", "options", "ImageNet")
    for column in columns:
        table.add_column(
            column, justify="right" if column in ("params (M)", "dim", "GFLOPs") else "left"
        )
    for m in listing["models"]:
        options = ", ".join(f"{k}={v}" for k, v in m["options"].items()) or "-"
        table.add_row(
            m["name"],
            f"{m['params'] / 1e6:.2f}",
            str(m["feature_dim"]),
            f"{m['gflops']:.2f}",
            "x".join(map(str, m["input_size"])),
            m["distance"],
            options,
            _imagenet(m),
        )
    return table


def _imagenet(m: dict) -> str:
    if m["pretrained"] is None:
        return "none"
    return f"{m['pretrained']}, {'cached' if m['imagenet_cached'] else 'not cached'}"


@app.command("import")
def import_(
    weights: Annotated[
        Path,
        typer.Argument(
            help="A fast-reid checkpoint (its model is read from the file), or any weights "
            "file with --model.",
            dir_okay=False,
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="The reidkit checkpoint to write.", dir_okay=False, show_default=False
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="The registered model the weights are for (default: a fast-reid file's own).",
            autocompletion=complete_model,
            show_default=False,
        ),
    ] = None,
    config: FastreidConfigOpt = None,
    bnneck: BnneckOpt = None,
    last_stride: LastStrideOpt = None,
    stem_pool: StemPoolOpt = None,
    height: Annotated[
        int | None,
        typer.Option("--height", min=1, show_default=False, help="Input height to record."),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option("--width", min=1, show_default=False, help="Input width to record."),
    ] = None,
    allow_partial: AllowPartialOpt = False,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write WEIGHTS as a reidkit checkpoint whose model card says its model, options,
    identities, input size, resize, pixel mean and std and distance, for extract, export
    and cron pipelines."""
    from reidkit.cli.signals import finishing
    from reidkit.models.importer import import_weights

    output.setup(quiet, verbose)
    with finishing():
        result = import_weights(
            weights, out, model_name=model, config=config, height=height, width=width,
            model_options={"bnneck": bnneck, "last_stride": last_stride, "stem_pool": stem_pool},
            allow_partial=allow_partial, force=force,
        )  # fmt: skip
    output.render(result, as_json, import_report)


def import_report(result: dict) -> str:
    data = result["data"]
    options = ", ".join(f"{k}={v}" for k, v in result["model_options"].items()) or "defaults"
    return (
        f"wrote {result['file']}: {result['model']} ({options}), {result['num_classes']} "
        f"identities, {data['height']}x{data['width']} {data.get('interpolation', 'bilinear')}, "
        f"{result['feature_dim']}-d features ranked by {result['distance']} distance"
    )
