"""Options shared by every command, each also readable from a REIDKIT_<OPTION> variable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def complete_dataset(incomplete: str) -> list[str]:
    """Dataset names for shell completion (paths are completed by the shell itself)."""
    from reidkit.data.catalog import DATASETS

    return [n for n in DATASETS.names() if n.startswith(incomplete)]


JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout.", envvar="REIDKIT_JSON")
]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="Print nothing on stderr except errors.", envvar="REIDKIT_QUIET"
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Add debug logging.", envvar="REIDKIT_VERBOSE")
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force", help="Redo the work even if the output is up to date.", envvar="REIDKIT_FORCE"
    ),
]
WaitForLockOpt = Annotated[
    bool,
    typer.Option(
        "--wait-for-lock",
        help="Wait while another process writes the same output, instead of exiting 75.",
        envvar="REIDKIT_WAIT_FOR_LOCK",
    ),
]
RootOpt = Annotated[
    Path,
    typer.Option(
        "--root",
        help="Data root holding one folder per dataset.",
        envvar=["REIDKIT_ROOT", "REIDKIT_DATA"],
        file_okay=False,
    ),
]
DatasetArg = Annotated[
    str,
    typer.Argument(
        help="A dataset name (see 'reidkit datasets list'), a Market-style "
        "folder or a CSV manifest.",
        autocompletion=complete_dataset,
        show_default=False,
    ),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers", min=0, help="Worker processes (0: one per CPU core).", envvar="REIDKIT_WORKERS"
    ),
]
DEFAULT_ROOT = Path("data")
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        show_default=False,
        envvar="REIDKIT_THREADS",
        help="CPU threads for torch, BLAS and image workers (default: OMP_NUM_THREADS if "
        "set, else the cores shared among the reidkit commands running now).",
    ),
]

AllowPartialOpt = Annotated[
    bool,
    typer.Option(
        "--allow-partial",
        help="Load weights that leave part of the model's trunk unloaded (warned, counted) "
        "instead of stopping.",
    ),
]

# model options of extract, export and models import (None: the model's, or the file's)
BnneckOpt = Annotated[
    bool | None,
    typer.Option(
        "--bnneck/--no-bnneck",
        help="--model with or without a BNNeck (default: the model's; 'models list' "
        "shows which models have the option).",
        show_default=False,
    ),
]
LastStrideOpt = Annotated[
    int | None,
    typer.Option(
        "--last-stride",
        help="--model's last stride, 1 or 2 (default: the model's); torchreid's resnet50 "
        "is --no-bnneck --last-stride 2.",
        show_default=False,
    ),
]

StemPoolOpt = Annotated[
    str | None,
    typer.Option(
        "--stem-pool",
        help="The stem's max pooling, padding or ceil (default: the model's; for a fast-reid "
        "file, padding for its model zoo's head layout and ceil for the later one).",
        show_default=False,
    ),
]
FastreidConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="fast-reid's config.yaml for a fast-reid --weights file (default: the one "
        "beside it): its test size, last stride, pooling and pixels.",
        dir_okay=False,
        show_default=False,
    ),
]
