"""``reidkit visrank`` (ranked lists as pictures, CSV, HTML and plots) and ``reidkit compare``
(several evaluations side by side, CMC curves overlaid)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reidkit.cli import output
from reidkit.cli.evaluate import (
    AllowMismatchOpt,
    DeviceOpt,
    FeatureArg,
    K1Opt,
    K2Opt,
    LambdaOpt,
    MetricOpt,
    NormalizeOpt,
    ProtocolOpt,
    RanksOpt,
    RerankOpt,
    RerankPoolOpt,
    ranking_from_options,
)
from reidkit.cli.options import JsonOpt, QuietOpt, ThreadsOpt, VerboseOpt, WorkersOpt
from reidkit.threads import configure as configure_threads

ORDERS = ["worst", "best", "random", "input"]


def visrank(
    query: FeatureArg,
    gallery: FeatureArg,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output folder (replaced if it holds an earlier visrank output).",
            file_okay=False,
            show_default=False,
        ),
    ],
    topk: Annotated[
        int, typer.Option("--topk", min=1, help="Ranked gallery items per query.")
    ] = 10,
    metric: MetricOpt = None,
    normalize: NormalizeOpt = False,
    protocol: ProtocolOpt = None,
    ranks: RanksOpt = "1,5,10,20",
    rerank: RerankOpt = False,
    k1: K1Opt = 20,
    k2: K2Opt = 6,
    lambda_value: LambdaOpt = 0.3,
    rerank_pool: RerankPoolOpt = "valid",
    allow_mismatch: AllowMismatchOpt = False,
    num_queries: Annotated[
        int | None,
        typer.Option(
            "--num-queries",
            min=0,
            show_default=False,
            help="Queries to show (default 20, or all of --queries; 0: all).",
        ),
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option(
            "--queries",
            dir_okay=False,
            show_default=False,
            help="File naming the queries to show, one per line: an index or an image path.",
        ),
    ] = None,
    order: Annotated[
        str | None,
        typer.Option(
            "--order",
            show_default=False,
            autocompletion=lambda: ORDERS,
            help="worst (lowest AP first), best, random or input (default: worst, or input "
            "with --queries).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --order random.")] = 0,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            file_okay=False,
            show_default=False,
            envvar="REIDKIT_IMAGE_ROOT",
            help="Where the images are (default: the root stored in the feature files).",
        ),
    ] = None,
    html: Annotated[bool, typer.Option("--html", help="Write a sortable index.html.")] = False,
    images: Annotated[
        bool, typer.Option("--images/--no-images", help="Draw the ranked-list pictures.")
    ] = True,
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Plot CMC, pair distances and AP.")
    ] = True,
    image_format: Annotated[
        str,
        typer.Option("--image-format", help="jpg or png.", autocompletion=lambda: ["jpg", "png"]),
    ] = "jpg",
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Draw each query's ranked gallery list, with ranked.csv, plots and an HTML index."""
    from reidkit.vis.visrank import visrank_files

    output.setup(quiet, verbose)
    configure_threads(threads)
    ranking = ranking_from_options(
        metric, normalize, protocol, ranks, rerank, k1, k2, lambda_value, rerank_pool, device
    )
    with output.progress_factory() as progress_factory:
        summary = visrank_files(
            query, gallery, out, ranking, allow_mismatch=allow_mismatch, topk=topk,
            num_queries=num_queries, queries=queries, order=order, seed=seed, root=root,
            html=html, images=images, plots=plots, image_format=image_format, workers=workers,
            progress_factory=progress_factory,
        )  # fmt: skip
    output.render(summary, as_json, _visrank_text)


def _visrank_text(summary: dict) -> str:
    e = summary["evaluation"]
    wrote = [f"{summary['queries_shown']} queries in ranked.csv"]
    if summary["images"]:
        shown = " (tracklets drawn by their first frame)" if "tracklet" in summary["shown"] else ""
        wrote.append(f"{summary['images']} pictures in ranked/{shown}")
    if summary["plots"]:
        wrote.append("plots/")
    if summary["index_html"]:
        wrote.append("index.html")
    return (
        f"mAP {100 * e['mAP']:.2f}%, rank-1 {100 * next(iter(e['cmc'].values())):.2f}% "
        f"({e['num_valid_query']} queries); order {summary['order']}\n"
        f"wrote {', '.join(wrote)} to {summary['out']}"
    )


def compare(
    results: Annotated[
        list[Path],
        typer.Argument(
            help="Evaluation results: saved 'evaluate --json' output or visrank summary.json.",
            dir_okay=False,
            show_default=False,
        ),
    ],
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label", help="A name per result, in order (default: file name).", show_default=False
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            dir_okay=False,
            show_default=False,
            help="Write the CMC curves overlaid in one figure (PNG).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Compare evaluations: a table of their metrics, and their CMC curves in one plot."""
    from reidkit.vis.plots import compare_results

    output.setup(quiet, verbose)
    document = compare_results(results, labels=label, plot=plot)
    output.render(document, as_json, _compare_table)


def _compare_table(document: dict):
    from rich.table import Table

    rows = document["results"]
    ranks = sorted({int(r) for row in rows for r in row["cmc"]})
    table = Table()
    for column in ("result", "mAP", "mINP", *(f"Rank-{r}" for r in ranks)):
        table.add_column(column, justify="left" if column == "result" else "right")
    for row in rows:
        cmc = {int(r): v for r, v in row["cmc"].items()}
        table.add_row(
            row["label"],
            f"{100 * row['mAP']:.2f}%",
            f"{100 * row['mINP']:.2f}%" if row.get("mINP") is not None else "",
            *(f"{100 * cmc[r]:.2f}%" if r in cmc else "" for r in ranks),
        )
    return table
