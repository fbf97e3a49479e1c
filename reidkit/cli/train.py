"""``reidkit train`` and ``reidkit resume``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reidkit.cli import output
from reidkit.cli.models import complete_model
from reidkit.cli.options import JsonOpt, QuietOpt, ThreadsOpt, VerboseOpt, complete_dataset
from reidkit.config import Config
from reidkit.models import list_models
from reidkit.threads import configure as configure_threads

DEFAULTS = Config()

RunOpt = Annotated[
    Path,
    typer.Option(
        "--run",
        "--run-dir",
        file_okay=False,
        envvar="REIDKIT_RUN",
        help="The run directory to create (under torchrun write --run-dir: torchrun takes "
        "--run for an abbreviation of its own --run-path).",
    ),
]

SkipBadOpt = Annotated[
    bool,
    typer.Option(
        "--skip-bad",
        help="Leave unreadable images out (listed in train.log) instead of stopping "
        "(data.skip_bad).",
    ),
]


def train(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="Config overrides key=value, e.g. optim.lr=3e-4 data.batch_size=64.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="A YAML config file.", dir_okay=False, show_default=False),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help=f"Training dataset: a registered name, a Market-style folder or a CSV "
            f"manifest (data.dataset; default {DEFAULTS.data.dataset}).",
            autocompletion=complete_dataset,
            show_default=False,
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help=f"Data root (data.root; default {DEFAULTS.data.root}).",
            envvar=["REIDKIT_ROOT", "REIDKIT_DATA"],
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help=f"Model (model.name; default {DEFAULTS.model.name}): {', '.join(list_models())}.",
            autocompletion=complete_model,
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            min=1,
            show_default=False,
            help=f"Epochs (train.epochs; default {DEFAULTS.train.epochs}).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            show_default=False,
            help=f"Images per batch: identities x data.num_instances (data.batch_size; "
            f"default {DEFAULTS.data.batch_size}).",
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            show_default=False,
            help=f"Learning rate (optim.lr; default {DEFAULTS.optim.lr}).",
        ),
    ] = None,
    pretrained: Annotated[
        str | None,
        typer.Option(
            "--pretrained",
            metavar="imagenet|none|FILE",
            show_default=False,
            help=f"Starting weights (model.pretrained; default {DEFAULTS.model.pretrained}): "
            "imagenet (from torchvision's cache, downloaded once; OSNet: torchreid's file in "
            "TORCH_HOME/checkpoints), none (from scratch), or a weights file (a state dict, "
            "a reidkit or torchreid checkpoint).",
        ),
    ] = None,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help="Start from weights that leave part of the trunk unloaded (model.allow_partial).",
        ),
    ] = False,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="Reproducible on the CPU (train.deterministic).")
    ] = False,
    skip_bad: SkipBadOpt = False,
    run: RunOpt = Path("runs/reid"),
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="Start over in an existing run directory.")
    ] = False,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Show the resolved config and exit.")
    ] = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train a re-ID model; the run directory keeps config, logs, metrics and weights.

    Every setting is a config key: give them in a YAML file (--config) and as key=value
    overrides after the options; 'reidkit train --print-config' lists every key with its
    value. See docs/training.md.
    """
    from reidkit.config import dump_config, load_config

    output.setup(quiet or not output.is_main_process(), verbose)
    configure_threads(threads)
    plain = {
        "data.dataset": dataset,
        "data.root": root,
        "model.name": model,
        "train.epochs": epochs,
        "data.batch_size": batch_size,
        "optim.lr": lr,
        "model.pretrained": pretrained,
        "model.allow_partial": True if allow_partial else None,
        "train.deterministic": True if deterministic else None,
        "data.skip_bad": True if skip_bad else None,
    }
    settings = [f"{k}={v}" for k, v in plain.items() if v is not None] + list(overrides or [])
    cfg = load_config(config, settings)
    if print_config:  # the resolved config is the result: stdout, YAML or JSON
        if as_json:
            output.emit_json(cfg.to_dict())
        else:
            typer.echo(dump_config(cfg), nl=False)
        return
    from reidkit.engine.run import train as run_training

    with output.progress("train") as progress:
        result = run_training(cfg, run, exist_ok=exist_ok, progress=progress)
    if output.is_main_process():
        output.render(result, as_json, train_report)


def resume(
    run: Annotated[
        Path, typer.Argument(help="The run directory.", file_okay=False, show_default=False)
    ],
    max_epoch: Annotated[
        int | None,
        typer.Option("--max-epoch", min=1, show_default=False, help="Train up to this epoch."),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", show_default=False, help="auto, cpu or cuda.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=-1, show_default=False, help="DataLoader workers."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", min=1, show_default=False, help="Images per batch (for memory)."
        ),
    ] = None,
    skip_bad: SkipBadOpt = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Continue a run from weights/last.pt with its saved config."""
    from reidkit.engine.run import resume as resume_run

    output.setup(quiet or not output.is_main_process(), verbose)
    configure_threads(threads)
    overrides = {
        "train.epochs": max_epoch,
        "train.device": device,
        "data.workers": workers,
        "data.batch_size": batch_size,
        "data.skip_bad": True if skip_bad else None,
    }
    with output.progress("train") as progress:
        result = resume_run(run, overrides, progress=progress)
    if output.is_main_process():
        output.render(result, as_json, train_report)


def train_report(result: dict) -> str:
    if result.get("finished"):
        epochs = f"{result['epochs']} epoch{'s' if result['epochs'] != 1 else ''}"
        return (
            f"{result['run']} is up to date (finished its {epochs}); --max-epoch N trains further"
        )
    best = result.get("best_mAP")
    on = f" on {result['selected_on']}" if result.get("selected_on") else ""
    best_text = f", best mAP {100 * best:.2f}%{on}" if best is not None else ""
    return (
        f"trained {result['run']} to epoch {result['epochs']} ({result['steps']} steps)"
        f"{best_text}; weights in {Path(result['run']) / 'weights'}"
    )
