"""Evaluate two feature files: distances (or re-ranked distances) block by block, ranking
metrics, and optionally a per-query CSV."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reidkit.errors import UsageError
from reidkit.fileio import atomic_open
from reidkit.metrics.distance import GalleryDistances, check_metric, resolve_device, row_blocks
from reidkit.metrics.rank import (
    DEFAULT_RANKS,
    RankAccumulator,
    RankResult,
    check_protocol,
    parse_ranks,
)
from reidkit.progress import ProgressFn, no_progress


def check_rerank_options(k1: int, k2: int, lambda_value: float) -> None:
    if k1 < 1 or k2 < 1:
        raise UsageError(f"--k1 and --k2 must be at least 1 (got k1={k1}, k2={k2})")
    if k2 > k1 + 1:
        raise UsageError(f"--k2 ({k2}) cannot exceed --k1 + 1 ({k1 + 1})")
    if not 0.0 <= lambda_value <= 1.0:
        raise UsageError(f"--lambda must be between 0 and 1, got {lambda_value}")


def read_pair(query_path: str | os.PathLike[str], gallery_path: str | os.PathLike[str]):
    """Read a query and a gallery feature file made by the same model.

    Raises:
        MissingInputError, DataError: unreadable or invalid feature files.
        UsageError: feature dimensions that differ.
    """
    from reidkit.features.store import read_features

    query, gallery = read_features(query_path), read_features(gallery_path)
    if query.dim != gallery.dim:
        raise UsageError(
            f"{query_path} has {query.dim}-dimensional features but {gallery_path} has "
            f"{gallery.dim}: they must come from the same model"
        )
    return query, gallery


def ranked_blocks(
    query: np.ndarray,
    gallery: np.ndarray,
    *,
    metric: str,
    normalize: bool,
    rerank: bool,
    k1: int,
    k2: int,
    lambda_value: float,
    device: str,
    progress: ProgressFn = no_progress,
):
    """(start, stop, distances) blocks of query rows, plain or re-ranked."""
    if rerank:
        from reidkit.metrics.rerank import rerank_blocks

        yield from rerank_blocks(
            query,
            gallery,
            metric=metric,
            normalize=normalize,
            k1=k1,
            k2=k2,
            lambda_value=lambda_value,
            device=device,
            progress=progress,
        )
        return
    distances = GalleryDistances(gallery, metric, normalize=normalize, device=device)
    prepared = distances.prepare(query)
    for start, stop in row_blocks(len(query), len(gallery)):
        yield start, stop, distances.block(prepared[start:stop])
        progress(stop, len(query))


@dataclass
class Ranking:
    """How the gallery is ranked for each query: the options evaluate and visrank share.

    Validates on creation (UsageError) and resolves ``device="auto"``.
    """

    metric: str = "euclidean"
    normalize: bool = False
    protocol: str = "market"
    ranks: Iterable[int] | str = DEFAULT_RANKS
    rerank: bool = False
    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3
    device: str = "auto"

    def __post_init__(self) -> None:
        check_metric(self.metric)
        self.ranks = parse_ranks(self.ranks)
        if self.rerank:
            check_rerank_options(self.k1, self.k2, self.lambda_value)
        check_protocol(self.protocol)
        self.device = resolve_device(self.device)

    @property
    def stage(self) -> str:
        return "rerank" if self.rerank else "distance"

    def blocks(self, query: np.ndarray, gallery: np.ndarray, progress: ProgressFn = no_progress):
        """(start, stop, distances) blocks of query rows; see :func:`ranked_blocks`."""
        return ranked_blocks(
            query,
            gallery,
            metric=self.metric,
            normalize=self.normalize,
            rerank=self.rerank,
            k1=self.k1,
            k2=self.k2,
            lambda_value=self.lambda_value,
            device=self.device,
            progress=progress,
        )

    def describe(
        self,
        result: RankResult,
        *,
        num_gallery: int,
        query: str | os.PathLike[str],
        gallery: str | os.PathLike[str],
    ) -> dict:
        """The JSON document of an evaluation (without timings), as evaluate and visrank
        print it."""
        return {
            **result.to_dict(),
            "num_gallery": num_gallery,
            "metric": self.metric,
            "protocol": self.protocol,
            "normalize": self.normalize,
            "rerank": {"k1": self.k1, "k2": self.k2, "lambda": self.lambda_value}
            if self.rerank
            else None,
            "device": self.device,
            "query": str(query),
            "gallery": str(gallery),
        }


def evaluate_files(
    query_path: str | os.PathLike[str],
    gallery_path: str | os.PathLike[str],
    *,
    metric: str = "euclidean",
    normalize: bool = False,
    protocol: str = "market",
    ranks: Iterable[int] | str = DEFAULT_RANKS,
    rerank: bool = False,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    device: str = "auto",
    per_query: str | os.PathLike[str] | None = None,
    progress: ProgressFn = no_progress,
) -> dict:
    """Rank the gallery for every query and compute CMC, mAP and mINP.

    Returns:
        The JSON document of ``reidkit evaluate``: metrics as fractions, counts, the
        options used, and seconds per stage.

    Raises:
        MissingInputError, DataError: unreadable or invalid feature files.
        UsageError: bad options, or query and gallery dimensions that differ.
    """
    ranking = Ranking(
        metric, normalize, protocol, ranks, rerank, k1, k2, lambda_value, device
    )  # fmt: skip
    t0 = time.perf_counter()
    query, gallery = read_pair(query_path, gallery_path)
    t1 = time.perf_counter()
    acc = RankAccumulator(
        query.pids, query.camids, gallery.pids, gallery.camids, protocol=protocol,
        ranks=ranking.ranks,
    )  # fmt: skip
    distance_seconds = rank_seconds = 0.0
    tick = time.perf_counter()
    for start, _, dist in ranking.blocks(query.features, gallery.features, progress):
        tock = time.perf_counter()
        acc.add(start, dist)
        distance_seconds += tock - tick
        tick = time.perf_counter()
        rank_seconds += tick - tock
    result = acc.result()
    if per_query is not None:
        write_per_query(per_query, result, query)
    return {
        **ranking.describe(
            result, num_gallery=len(gallery), query=query_path, gallery=gallery_path
        ),
        "seconds": {
            "load": round(t1 - t0, 4),
            ranking.stage: round(distance_seconds, 4),
            "rank": round(rank_seconds, 4),
            "total": round(time.perf_counter() - t0, 4),
        },
    }


def write_per_query(path: str | os.PathLike[str], result: RankResult, query) -> None:
    """CSV of every query: index, path, pid, camid, AP and first-match rank (blank when the
    query was skipped)."""
    paths = query.paths or [""] * len(query)
    with atomic_open(Path(path), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("index", "path", "pid", "camid", "ap", "first_match"))
        for i in range(len(query)):
            skipped = result.first_match[i] < 0
            writer.writerow(
                (
                    i,
                    paths[i],
                    int(query.pids[i]),
                    int(query.camids[i]),
                    "" if skipped else f"{result.ap[i]:.6f}",
                    "" if skipped else int(result.first_match[i]),
                )
            )
