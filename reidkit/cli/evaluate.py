"""``reidkit evaluate``: rank a gallery for each query; report CMC, mAP and mINP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reidkit.cli import output
from reidkit.cli.options import JsonOpt, QuietOpt, ThreadsOpt, VerboseOpt
from reidkit.threads import configure as configure_threads

FeatureArg = Annotated[
    Path, typer.Argument(help="A feature file (.h5).", show_default=False, dir_okay=False)
]
MetricOpt = Annotated[
    str | None,
    typer.Option(
        "--metric",
        help="euclidean, sqeuclidean or cosine (default: the distance the model is meant "
        "for, as the feature files say; else euclidean)",
        envvar="REIDKIT_METRIC",
        show_default=False,
        autocompletion=lambda: ["euclidean", "sqeuclidean", "cosine"],
    ),
]
NormalizeOpt = Annotated[
    bool,
    typer.Option(
        "--normalize",
        help="L2-normalise features before computing distances.",
        envvar="REIDKIT_NORMALIZE",
    ),
]
ProtocolOpt = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        help="market (drop same-camera matches), cuhk03 (single-gallery-shot) or "
        "none (single-camera data) (default: the protocol of the dataset the feature files "
        "hold; else market)",
        envvar="REIDKIT_PROTOCOL",
        show_default=False,
        autocompletion=lambda: ["market", "cuhk03", "none"],
    ),
]
RanksOpt = Annotated[
    str, typer.Option("--ranks", help="CMC ranks to report.", envvar="REIDKIT_RANKS")
]
RerankOpt = Annotated[
    bool,
    typer.Option(
        "--rerank",
        help="k-reciprocal re-ranking (Zhong et al., CVPR 2017).",
        envvar="REIDKIT_RERANK",
    ),
]
K1Opt = Annotated[int, typer.Option("--k1", help="Re-ranking k1.", envvar="REIDKIT_K1")]
K2Opt = Annotated[int, typer.Option("--k2", help="Re-ranking k2.", envvar="REIDKIT_K2")]
LambdaOpt = Annotated[
    float,
    typer.Option(
        "--lambda", help="Re-ranking weight of the original distance.", envvar="REIDKIT_LAMBDA"
    ),
]
RerankPoolOpt = Annotated[
    str,
    typer.Option(
        "--rerank-pool",
        help="Items re-ranking encodes: valid (queries and gallery without junk, as "
        "torchreid) or all.",
        envvar="REIDKIT_RERANK_POOL",
        autocompletion=lambda: ["valid", "all"],
    ),
]
AllowMismatchOpt = Annotated[
    bool,
    typer.Option(
        "--allow-mismatch",
        help="Rank query and gallery files made by different models, checkpoints, image "
        "sizes, flip or normalisation anyway.",
        envvar="REIDKIT_ALLOW_MISMATCH",
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        help="auto, cpu or cuda.",
        envvar="REIDKIT_DEVICE",
        autocompletion=lambda: ["auto", "cpu", "cuda"],
    ),
]


def ranking_from_options(
    metric, normalize, protocol, ranks, rerank, k1, k2, lambda_value, rerank_pool, device
):
    """The one Ranking a command's ranking options describe."""
    from reidkit.metrics.ranking import Ranking, Rerank

    return Ranking(
        metric=metric,
        normalize=normalize,
        protocol=protocol,
        ranks=ranks,
        rerank=Rerank(k1, k2, lambda_value, rerank_pool) if rerank else None,
        device=device,
    )


def evaluate(
    query: FeatureArg,
    gallery: FeatureArg,
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
    per_query: Annotated[
        Path | None,
        typer.Option(
            "--per-query",
            help="Write each query's AP and first-match rank to this CSV.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Rank the gallery for each query and report CMC, mAP and mINP."""
    from reidkit.metrics.evaluate import evaluate_files

    output.setup(quiet, verbose)
    configure_threads(threads)
    ranking = ranking_from_options(
        metric, normalize, protocol, ranks, rerank, k1, k2, lambda_value, rerank_pool, device
    )
    with output.progress("rerank" if rerank else "evaluate") as progress:
        result = evaluate_files(
            query,
            gallery,
            ranking,
            allow_mismatch=allow_mismatch,
            per_query=per_query,
            progress=progress,
        )
    output.render(result, as_json, metrics_table)


def metrics_table(result: dict):
    """mAP, mINP and Rank-k in percent, and the counts under the table."""
    from rich.console import Group
    from rich.table import Table

    table = Table()
    table.add_column("metric", style="cyan")
    table.add_column("value", justify="right")
    table.add_row("mAP", f"{100 * result['mAP']:.2f}%")
    table.add_row("mINP", f"{100 * result['mINP']:.2f}%")
    for rank, value in result["cmc"].items():
        table.add_row(f"Rank-{rank}", f"{100 * value:.2f}%")
    how = result["summary"]
    counts = (
        f"{result['num_valid_query']} of {result['num_query']} queries evaluated "
        f"({result['skipped_queries']} without a valid match), "
        f"{result['num_gallery']} gallery items, {result['seconds']['total']:.2f} s"
    )
    return Group(how, table, counts)
