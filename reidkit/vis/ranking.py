"""The ranked lists behind visrank, computed by the same code as ``reidkit evaluate``.

One pass over blocks of query rows (plain or re-ranked distances from
:func:`reidkit.metrics.evaluate.ranked_blocks`) feeds three consumers at once:

- the evaluator's :class:`RankAccumulator`, for AP, first-match rank and the CMC curve;
- the top of each query's list: the gallery in evaluation order (distance, then gallery
  index) up to and including the k-th ranked item, with the items the protocol ignores
  (junk, and same identity on the same camera) kept where their distance puts them, marked
  and without a rank number;
- distances of positive and negative pairs for the histograms, all of them up to a cap,
  then a uniform random sample (negatives are Q x G pairs; the sample keeps memory bounded).

Memory is O(Q * k) for the lists plus the pair samples, whatever the gallery size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reidkit.metrics.distance import nonzero_2d
from reidkit.metrics.match_ranks import order_in_rows
from reidkit.metrics.rank import RankAccumulator, RankResult
from reidkit.metrics.rerank import smallest

VALID, JUNK, SAME_CAMERA = 0, 1, 2
IGNORED_REASONS = {VALID: "", JUNK: "junk", SAME_CAMERA: "same camera"}
PAIR_SAMPLE = 1_000_000  # at most this many pair distances of each kind are kept


@dataclass
class RankedLists:
    """The top of every query's ranked list, flat: query i owns items offsets[i]:offsets[i+1].

    Attributes:
        gallery: gallery index of each item.
        distance: its distance to the query (re-ranked distance with re-ranking).
        rank: its 1-based rank in the evaluation, 0 for an ignored item.
        same_pid: whether it shows the query's identity.
        ignored: VALID, JUNK or SAME_CAMERA.
    """

    offsets: np.ndarray
    gallery: np.ndarray
    distance: np.ndarray
    rank: np.ndarray
    same_pid: np.ndarray
    ignored: np.ndarray

    def items(self, query: int) -> slice:
        return slice(int(self.offsets[query]), int(self.offsets[query + 1]))


@dataclass
class PairDistances:
    """Distances of valid (query, gallery) pairs: same identity, and different identity.

    ``positive_total`` and ``negative_total`` count all such pairs; the arrays hold all of
    them, or a uniform sample when there are more than PAIR_SAMPLE.
    """

    positive: np.ndarray
    negative: np.ndarray
    positive_total: int
    negative_total: int


def ignored_reasons(qp, qc, g_pids, g_camids, protocol: str, same=None) -> np.ndarray:
    """(b, G) uint8: why the protocol ignores each gallery item for each query (0: it doesn't).

    ``same``, the (b, G) mask of same-identity pairs, is computed when not given.
    """
    if same is None:
        same = g_pids[None, :] == qp[:, None]
    junk = g_pids == -1
    reason = np.repeat(np.where(junk, JUNK, VALID).astype(np.uint8)[None, :], len(qp), axis=0)
    if protocol != "none":
        rows, cols = nonzero_2d(same)  # few per row: only these can share the camera too
        hit = (g_camids[cols] == qc[rows]) & ~junk[cols]
        reason[rows[hit], cols[hit]] = SAME_CAMERA
    return reason


def top_of_block(dist: np.ndarray, reason: np.ndarray, k: int):
    """Each row's list up to its k-th ranked item, ignored items included.

    Returns:
        rows, gallery indices, ranks (0 for ignored items), in list order per row.
    """
    valid = reason == VALID
    kk = min(k, dist.shape[1])
    kth = smallest(np.where(valid, dist, np.inf), kk)[1][:, kk - 1]
    rows, cols = nonzero_2d(dist <= kth[:, None])
    order = order_in_rows(dist, rows, cols)
    rows, cols = rows[order], cols[order]
    is_valid = valid[rows, cols]
    counted = np.cumsum(is_valid)
    per_row = np.bincount(rows, minlength=len(dist))
    before_row = np.concatenate(([0], counted))[np.cumsum(per_row) - per_row]
    rank = counted - before_row[rows]  # valid items up to and including this one
    # keep ranked items up to the k-th, and ignored ones ahead of it (ties after it go)
    keep = np.where(is_valid, rank <= k, rank < k)
    rows, cols, rank = rows[keep], cols[keep], np.where(is_valid, rank, 0)[keep]
    return rows, cols, rank


class _PairSampler:
    """Collects pair distances, keeping each pair with a fixed probability."""

    def __init__(self, expected: int, rng: np.random.Generator) -> None:
        self.rate = min(1.0, PAIR_SAMPLE / max(1, expected))
        self.rng = rng
        self.parts: list[np.ndarray] = []
        self.total = 0

    def add_all(self, values: np.ndarray) -> None:
        """Pairs given one by one (positives: few per query)."""
        self.total += len(values)
        if self.rate < 1.0:
            values = values[self.rng.random(len(values)) < self.rate]
        self.parts.append(values.astype(np.float32, copy=False))

    def add_sampled(self, dist: np.ndarray, mask: np.ndarray) -> None:
        """Pairs given as a (b, G) mask (negatives: nearly all pairs), sampled by position."""
        self.total += int(np.count_nonzero(mask))
        if self.rate >= 1.0:
            self.parts.append(dist[mask].astype(np.float32, copy=False))
            return
        picks = self.rng.binomial(mask.size, self.rate)
        flat = self.rng.choice(mask.size, size=picks, replace=False)
        flat = flat[mask.ravel()[flat]]
        self.parts.append(dist.ravel()[np.sort(flat)].astype(np.float32, copy=False))

    def values(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


def rank_lists(
    query,
    gallery,
    blocks,
    *,
    protocol: str,
    ranks,
    topk: int,
    seed: int = 0,
) -> tuple[RankResult, RankedLists, PairDistances]:
    """Consume (start, stop, distances) blocks; return metrics, ranked lists and pair distances.

    Args:
        query, gallery: FeatureSets (labels are used; features were used by ``blocks``).
        blocks: from :meth:`reidkit.metrics.ranking.Ranking.blocks` (each is used before
            the next is asked for: plain distance blocks share one buffer).
        protocol, ranks: as for evaluate.
        topk: ranked items per list.
        seed: seeds the pair-distance sample.
    """
    g_pids, g_camids = gallery.pids, gallery.camids
    acc = RankAccumulator(
        query.pids, query.camids, g_pids, g_camids, protocol=protocol, ranks=ranks
    )
    rng = np.random.default_rng([seed, 1])
    per_pid = dict(zip(*np.unique(g_pids, return_counts=True), strict=True))
    expected_pos = sum(per_pid.get(int(p), 0) for p in query.pids if p != -1)
    positives = _PairSampler(expected_pos, rng)
    negatives = _PairSampler(len(query) * len(gallery) - expected_pos, rng)
    parts = []
    for start, stop, dist in blocks:
        dist = np.asarray(dist, dtype=np.float32)
        acc.add(start, dist)
        qp, qc = query.pids[start:stop], query.camids[start:stop]
        same = g_pids[None, :] == qp[:, None]
        reason = ignored_reasons(qp, qc, g_pids, g_camids, protocol, same)
        rows, cols, rank = top_of_block(dist, reason, topk)
        parts.append(
            (rows + start, cols, dist[rows, cols], rank, same[rows, cols], reason[rows, cols])
        )
        valid = reason == VALID
        positives.add_all(dist[valid & same])
        negatives.add_sampled(dist, valid & ~same)
    rows, cols, dists, rank, same_pid, ignored = (
        np.concatenate(p) for p in zip(*parts, strict=True)
    )
    offsets = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=len(query)))))
    lists = RankedLists(offsets, cols, dists, rank, same_pid, ignored)
    pairs = PairDistances(positives.values(), negatives.values(), positives.total, negatives.total)
    return acc.result(), lists, pairs
