"""Evaluate two feature files: distances (or re-ranked distances) block by block, ranking
metrics, and optionally a per-query CSV."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

from reidkit.fileio import atomic_open
from reidkit.metrics.rank import RankAccumulator, RankResult
from reidkit.metrics.ranking import Ranking
from reidkit.progress import ProgressFn, no_progress


def read_pair(
    query_path: str | os.PathLike[str],
    gallery_path: str | os.PathLike[str],
    *,
    allow_mismatch: bool = False,
):
    """Read a query and a gallery feature file that belong together.

    Raises:
        MissingInputError, DataError: unreadable or invalid feature files.
        UsageError: feature dimensions that differ, or (unless ``allow_mismatch``) files
            made by another model, checkpoint, image size, flip or normalisation.
    """
    from reidkit.features.origin import check_same_origin
    from reidkit.features.store import read_features
    from reidkit.metrics.distance import GalleryDistances

    # the gallery with room for the norms of one-product distances (GalleryDistances)
    query = read_features(query_path)
    gallery = read_features(gallery_path, spare_columns=GalleryDistances.EXTRA_COLUMNS)
    if query.dim != gallery.dim or not allow_mismatch:
        check_same_origin(query, gallery)
    return query, gallery


def evaluate_files(
    query_path: str | os.PathLike[str],
    gallery_path: str | os.PathLike[str],
    ranking: Ranking | None = None,
    *,
    allow_mismatch: bool = False,
    per_query: str | os.PathLike[str] | None = None,
    progress: ProgressFn = no_progress,
) -> dict:
    """Rank the gallery for every query and compute CMC, mAP and mINP.

    Args:
        ranking: how to rank (default: ``Ranking()``, metric and protocol from the files).
        allow_mismatch: evaluate files made by different models or options anyway.
        per_query: also write each query's AP and first-match rank to this CSV.

    Returns:
        The JSON document of ``reidkit evaluate``: metrics as fractions, counts, the
        options used (and what chose them), and seconds per stage.

    Raises:
        MissingInputError, DataError: unreadable or invalid feature files.
        UsageError: bad options, or query and gallery files that do not belong together.
    """
    ranking = ranking or Ranking()
    t0 = time.perf_counter()
    query, gallery = read_pair(query_path, gallery_path, allow_mismatch=allow_mismatch)
    ranking = ranking.resolve(query, gallery)
    t1 = time.perf_counter()
    acc = RankAccumulator(
        query.pids, query.camids, gallery.pids, gallery.camids, protocol=ranking.protocol,
        ranks=ranking.ranks,
    )  # fmt: skip
    distance_seconds = rank_seconds = 0.0
    tick = time.perf_counter()
    for start, _, dist in ranking.blocks(query, gallery, progress):
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
