"""``reidkit models``: the registered models."""

from __future__ import annotations

from typing import Annotated

import typer

from reidkit.cli import output
from reidkit.cli.options import JsonOpt, QuietOpt, VerboseOpt

app = typer.Typer(help="List the registered models.", no_args_is_help=True, rich_markup_mode=None)


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
