"""Ranking metrics: CMC, mAP and mINP, exact, without sorting whole gallery rows.

Protocols:
- ``market``: per query, gallery items with the query's pid and camera are removed.
- ``cuhk03``: as market, and the CMC is single-gallery-shot: one random gallery image per
  identity, averaged over seeded repeats; AP and INP use the full list.
- ``none``: no camera filter, for single-camera data.
Under every protocol gallery items with pid -1 (junk) are removed. A query without a valid
match is skipped and counted.

AP follows the usual re-ID definition, (1/P) * sum_k k / r_k for the P matches at ranks
r_1 < ... < r_P, and INP = P / r_P (Ye et al., "Deep Learning for Person Re-identification:
A Survey and Outlook", TPAMI 2021).

Speed: the metrics need only the rank of each match among the query's valid gallery items,
which reidkit.metrics.match_ranks finds exactly (ties included: equal distances keep
gallery order, as in a stable sort) in a few passes over each block of distances, at a cost
that does not grow on poor features.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from reidkit.errors import DataError, UsageError
from reidkit.metrics.distance import row_blocks
from reidkit.metrics.match_ranks import GalleryLabels, match_ranks

PROTOCOLS = ("market", "cuhk03", "none")
DEFAULT_RANKS = (1, 5, 10, 20)
CURVE_RANKS = 50  # the CMC curve covers at least ranks 1..50, for plots


@dataclass
class RankResult:
    """Metrics of one evaluation; fractions in [0, 1].

    Attributes:
        mAP, mINP: means over valid queries.
        cmc: rank -> fraction of valid queries matched within that rank.
        cmc_curve: the CMC at ranks 1, 2, ..., max(50, largest requested rank).
        ap: per-query AP, NaN for skipped queries.
        first_match: per-query 1-based rank of the first match, -1 for skipped queries.
        num_query, num_valid_query, skipped: query counts.
    """

    mAP: float
    mINP: float
    cmc: dict[int, float]
    ap: np.ndarray
    first_match: np.ndarray
    num_query: int
    num_valid_query: int
    skipped: int
    protocol: str = "market"
    cmc_curve: np.ndarray = field(default_factory=lambda: np.zeros(0))
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "mAP": self.mAP,
            "mINP": self.mINP,
            "cmc": {str(r): v for r, v in self.cmc.items()},
            "cmc_curve": [round(float(v), 6) for v in self.cmc_curve],
            "num_query": self.num_query,
            "num_valid_query": self.num_valid_query,
            "skipped_queries": self.skipped,
        }


def check_protocol(protocol: str) -> str:
    """Return ``protocol`` if known, else raise a UsageError."""
    if protocol not in PROTOCOLS:
        raise UsageError(
            f"unknown protocol '{protocol}'", hint=f"protocols: {', '.join(PROTOCOLS)}"
        )
    return protocol


def parse_ranks(ranks: Iterable[int] | str) -> tuple[int, ...]:
    """Sorted unique positive ranks, from a sequence or "1,5,10"."""
    if isinstance(ranks, str):
        try:
            ranks = [int(r) for r in ranks.split(",") if r.strip()]
        except ValueError:
            raise UsageError(f"--ranks must be comma-separated integers, not {ranks!r}") from None
    ranks = tuple(sorted(set(int(r) for r in ranks)))
    if not ranks or ranks[0] < 1:
        raise UsageError(f"ranks must be positive integers, got {ranks}")
    return ranks


def _valid(q_pid: int, q_camid: int, g_pids, g_camids, protocol: str) -> np.ndarray:
    """(G,) mask of the gallery items one query may be ranked against."""
    valid = g_pids != -1
    if protocol != "none":
        valid &= ~((g_pids == q_pid) & (g_camids == q_camid))
    return valid


class RankAccumulator:
    """Collects per-query metrics block by block; :meth:`result` summarises them.

    Args:
        q_pids, q_camids, g_pids, g_camids: label arrays.
        protocol: one of PROTOCOLS.
        ranks: CMC ranks to report.
        seed, repeats: the cuhk03 protocol's sampling.
    """

    def __init__(
        self,
        q_pids,
        q_camids,
        g_pids,
        g_camids,
        *,
        protocol: str = "market",
        ranks: Iterable[int] = DEFAULT_RANKS,
        seed: int = 0,
        repeats: int = 10,
    ) -> None:
        self.protocol = check_protocol(protocol)
        self.q_pids = np.asarray(q_pids, dtype=np.int64)
        self.q_camids = np.asarray(q_camids, dtype=np.int64)
        self.g_pids = np.asarray(g_pids, dtype=np.int64)
        self.g_camids = np.asarray(g_camids, dtype=np.int64)
        self.ranks = parse_ranks(ranks)
        self.repeats = repeats
        self.rng = np.random.default_rng(seed)
        self.labels = GalleryLabels(
            self.g_pids, self.g_camids, same_camera_ignored=self.protocol != "none"
        )
        n = len(self.q_pids)
        self.ap = np.full(n, np.nan)
        self.inp = np.full(n, np.nan)
        self.first = np.full(n, -1, dtype=np.int64)
        self.curve_ranks = np.arange(1, max(CURVE_RANKS, self.ranks[-1]) + 1)
        self.cmc_sum = np.zeros(len(self.curve_ranks))

    def add(self, start: int, dist: np.ndarray) -> None:
        """Add the (b, G) distances of queries start..start+b-1."""
        dist = np.asarray(dist, dtype=np.float32)
        b = len(dist)
        qp, qc = self.q_pids[start : start + b], self.q_camids[start : start + b]
        ranks, rank_rows, counts = match_ranks(dist, qp, qc, self.labels)
        first_of_row = np.cumsum(counts) - counts
        k = np.arange(len(ranks)) - first_of_row[rank_rows] + 1  # k-th match of its row
        has = counts > 0
        ap = np.bincount(rank_rows, weights=k / ranks, minlength=b)
        idx = np.arange(start, start + b)[has]
        self.ap[idx] = ap[has] / counts[has]
        self.first[idx] = ranks[first_of_row[has]]
        self.inp[idx] = counts[has] / ranks[first_of_row[has] + counts[has] - 1]
        if self.protocol == "cuhk03":
            for row in np.flatnonzero(has):
                valid_row = _valid(qp[row], qc[row], self.g_pids, self.g_camids, self.protocol)
                self.cmc_sum += self._single_shot_cmc(dist[row], valid_row, qp[row])
        else:
            # first matches beyond the curve add nothing; within it, one count from there on
            first = self.first[idx]
            self.cmc_sum += np.cumsum(
                np.bincount(first[first <= len(self.curve_ranks)] - 1, minlength=len(self.cmc_sum))
            )

    def _single_shot_cmc(self, dist, valid, q_pid) -> np.ndarray:
        """CMC of one query at self.curve_ranks, one random gallery image per identity,
        averaged."""
        index = np.flatnonzero(valid)
        pids = self.g_pids[index]
        order = np.argsort(pids, kind="stable")
        index, pids = index[order], pids[order]
        uniq, starts, sizes = np.unique(pids, return_index=True, return_counts=True)
        own = int(np.searchsorted(uniq, q_pid))
        hits = np.zeros(len(self.curve_ranks))
        for _ in range(self.repeats):
            picked = index[starts + self.rng.integers(0, sizes)]
            d = dist[picked]
            # closer items, and equally close items earlier in the gallery (a stable sort)
            ahead = (d < d[own]) | ((d == d[own]) & (picked < picked[own]))
            hits += 1 + int(ahead.sum()) <= self.curve_ranks
        return hits / self.repeats

    def result(self) -> RankResult:
        """The summary; raises DataError when no query had a valid match."""
        valid = self.first > 0
        n_valid = int(valid.sum())
        if n_valid == 0:
            raise DataError(
                f"every query was skipped: none of the {len(self.first)} queries has a valid "
                f"match in the gallery under protocol '{self.protocol}'",
                hint="for single-camera data use --protocol none",
            )
        curve = self.cmc_sum / n_valid
        return RankResult(
            mAP=float(self.ap[valid].mean()),
            mINP=float(self.inp[valid].mean()),
            cmc={r: float(curve[r - 1]) for r in self.ranks},
            cmc_curve=curve,
            ap=self.ap,
            first_match=self.first,
            num_query=len(self.first),
            num_valid_query=n_valid,
            skipped=len(self.first) - n_valid,
            protocol=self.protocol,
        )


def evaluate_distances(
    distmat: np.ndarray,
    q_pids,
    q_camids,
    g_pids,
    g_camids,
    *,
    protocol: str = "market",
    ranks: Iterable[int] = DEFAULT_RANKS,
    seed: int = 0,
    repeats: int = 10,
) -> RankResult:
    """Metrics from a full (Q, G) distance matrix (for callers that already have one)."""
    acc = RankAccumulator(
        q_pids,
        q_camids,
        g_pids,
        g_camids,
        protocol=protocol,
        ranks=ranks,
        seed=seed,
        repeats=repeats,
    )
    for start, stop in row_blocks(*distmat.shape):
        acc.add(start, distmat[start:stop])
    return acc.result()
