"""``reidkit demo``: synthesise, train, extract and evaluate, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reidkit.cli import output
from reidkit.cli.options import JsonOpt, QuietOpt, ThreadsOpt, VerboseOpt
from reidkit.engine.demo import DEMO_EPOCHS
from reidkit.threads import configure as configure_threads


def demo(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder for everything the demo makes.",
            file_okay=False,
            envvar="REIDKIT_OUT",
        ),
    ] = Path("demo"),
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs.")] = DEMO_EPOCHS,
    video: Annotated[
        bool,
        typer.Option(
            "--video", help="Video re-ID: tracklets of synthreid-video, pooled over time."
        ),
    ] = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the whole pipeline on synthetic data: trained model vs the same model untrained.

    Renders synthreid (preset small), trains resnet18 from scratch, extracts query and
    gallery features of it and of its untrained start, evaluates both, overlays their CMC
    curves and draws the trained model's worst ranked lists. With --video: the same on the
    tracklets of synthreid-video (preset video-small).
    """
    from reidkit.engine.demo import run_demo

    output.setup(quiet, verbose)
    configure_threads(threads)
    with output.progress_factory() as progress_factory:
        result = run_demo(out, epochs=epochs, video=video, progress_factory=progress_factory)
    output.render(result, as_json, demo_report)


def demo_report(result: dict) -> str:
    t, u = result["trained"], result["untrained"]
    return "\n".join(
        [
            f"demo finished in {result['seconds']:.0f} s; run: {result['run']}",
            f"  trained:   mAP {100 * t['mAP']:5.1f}%   rank-1 {100 * t['rank1']:5.1f}%"
            f"   ({result['weights']['trained']})",
            f"  untrained: mAP {100 * u['mAP']:5.1f}%   rank-1 {100 * u['rank1']:5.1f}%"
            f"   ({result['weights']['untrained']})",
            "  features: " + ", ".join(result["features"]),
            f"  ranked lists: {result['visrank']}",
            f"  CMC curves:   {result['cmc_plot']}",
        ]
    )
