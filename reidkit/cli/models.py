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
    """Name, parameters, feature dimension and GFLOPs (at 256x128) of each model."""
    from reidkit.models import list_models, model_info

    output.setup(quiet, verbose)
    infos = [model_info(name) for name in list_models(pattern)]
    output.render({"models": infos}, as_json, models_table)


def models_table(listing: dict):
    from rich.table import Table

    table = Table()
    for column in ("model", "params (M)", "feature dim", "GFLOPs", "description"):
        table.add_column(column, justify="left" if column in ("model", "description") else "right")
    for m in listing["models"]:
        table.add_row(
            m["name"],
            f"{m['params'] / 1e6:.2f}",
            str(m["feature_dim"]),
            f"{m['gflops']:.2f}",
            m["description"],
        )
    return table
