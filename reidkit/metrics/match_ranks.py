"""Where each query's matches rank among its valid gallery items, exactly, without sorting rows.

Every ranking metric (CMC, AP, INP) is a function of the 1-based ranks r_1 < ... < r_P of a
query's P matches among the gallery items the protocol keeps. The rank of the m-th match is
m plus the number of valid non-matches ahead of it: those with a smaller distance, and those
with an equal distance and a smaller gallery index (the order of a stable sort, which the
reference evaluator uses). Two exact ways to count them, chosen per block of queries:

- **candidates**: keep the valid items no farther than the query's farthest match and sort
  just those. On good features they are a small fraction of the gallery.
- **histogram**: on poor features the farthest match lies deep in the row and the candidates
  are most of it. Then each row's distances are bucketed into LEVELS cells between 0 and
  its farthest match (monotone, so an item in a lower cell than a match is ahead of it and
  one in a higher cell behind it), one histogram per row counts the items per cell, and
  only the items sharing a cell with a match or an ignored item are compared exactly. The
  cost is a few passes over the block whatever the feature quality.

Both give identical ranks (tests/metrics checks each against the reference). Distances must
be non-negative float32, as every distance and re-ranking of reidkit is.
"""

from __future__ import annotations

import numpy as np

from reidkit.metrics.distance import nonzero_2d, row_blocks

LEVELS = 8192  # histogram cells per row between 0 and the farthest match
SUB_BLOCK_BYTES = 4 * 2**20  # rows bucketed at once: the passes stay in the CPU's caches
SORT_FRACTION = 1 / 16  # sort the candidates when at most this fraction of a block (estimate)


class GalleryLabels:
    """The gallery's identities and cameras, indexed for looking up each query's matches.

    Args:
        g_pids, g_camids: (G,) labels; pid -1 is junk, never ranked.
        same_camera_ignored: whether gallery items with the query's identity and camera are
            left out of its ranking (the market and cuhk03 protocols).
    """

    def __init__(self, g_pids, g_camids, *, same_camera_ignored: bool) -> None:
        self.pids = np.asarray(g_pids, dtype=np.int64)
        self.camids = np.asarray(g_camids, dtype=np.int64)
        self.same_camera_ignored = same_camera_ignored
        self._by_pid = np.argsort(self.pids, kind="stable")
        self._sorted_pids = self.pids[self._by_pid]
        self.junk = np.flatnonzero(self.pids == -1)

    def same_pid(self, qp: np.ndarray, qc: np.ndarray):
        """(rows, cols, is_match) of every gallery item sharing a query's identity, grouped by
        row; is_match is False for the items the protocol ignores (same camera)."""
        lo = np.searchsorted(self._sorted_pids, qp, "left")
        lengths = np.where(qp == -1, 0, np.searchsorted(self._sorted_pids, qp, "right") - lo)
        rows = np.repeat(np.arange(len(qp)), lengths)
        cols = self._by_pid[
            np.repeat(lo - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
        ]
        is_match = np.ones(len(rows), dtype=bool)
        if self.same_camera_ignored:
            is_match = self.camids[cols] != qc[rows]
        return rows, cols, is_match

    def classify(self, rows, cols, qp, qc):
        """(valid, is_match) of arbitrary (row, gallery index) pairs."""
        gp = self.pids[cols]
        same = gp == qp[rows]
        valid = gp != -1
        if self.same_camera_ignored:
            valid &= ~(same & (self.camids[cols] == qc[rows]))
        return valid, same & valid


def match_ranks(dist: np.ndarray, qp: np.ndarray, qc: np.ndarray, labels: GalleryLabels):
    """1-based ranks of every valid match of a block of queries among their valid items.

    Args:
        dist: (b, G) non-negative float32 distances of queries with labels ``qp``, ``qc``.

    Returns:
        ranks, and the row of each rank, grouped by row in row order and ascending within
        a row; and the number of matches of each row.
    """
    rows, cols, is_match = labels.same_pid(qp, qc)
    match_rows, match_cols = rows[is_match], cols[is_match]
    counts = np.bincount(match_rows, minlength=len(dist))
    farthest = np.full(len(dist), -1.0, dtype=np.float32)
    np.maximum.at(farthest, match_rows, dist[match_rows, match_cols])
    if _few_candidates(dist, farthest):
        ranks, rank_rows = _by_candidates(dist, farthest, qp, qc, labels)
    else:
        ranks, rank_rows = _by_histogram(dist, farthest, qp, qc, labels, rows, cols)
    return ranks, rank_rows, counts


def _few_candidates(dist: np.ndarray, farthest: np.ndarray) -> bool:
    """Whether at most SORT_FRACTION of the block is no farther than its row's farthest
    match, estimated on every 16th column."""
    sample = dist[:, ::16]
    return np.count_nonzero(sample <= farthest[:, None]) <= SORT_FRACTION * sample.size


def order_in_rows(dist: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The permutation that sorts (row, gallery index) pairs by row, then by distance.

    Pairs must arrive in (row, gallery index) order, as np.nonzero gives them; equal
    distances then keep gallery order, exactly as a stable sort of the whole row would.
    """
    d = np.ascontiguousarray(dist[rows, cols], dtype=np.float32)
    # Non-negative float32 bit patterns sort like the values.
    key = (rows.astype(np.int64) << 32) | d.view(np.uint32).astype(np.int64)
    return np.argsort(key, kind="stable")


def _ranks_in_order(rows: np.ndarray, is_match: np.ndarray, ahead: np.ndarray, b: int):
    """Ranks of the matches among pairs sorted by row and distance: the match's position
    among the row's matches plus ``ahead`` (valid non-matches before it not in the list)
    plus the non-matches before it in the list."""
    misses = (~is_match).astype(np.int64)
    misses_before = np.cumsum(misses) - misses
    row_misses = np.bincount(rows, weights=misses, minlength=b).astype(np.int64)
    match_rows = rows[is_match]
    per_row = np.bincount(match_rows, minlength=b)
    nth = np.arange(len(match_rows)) - (np.cumsum(per_row) - per_row)[match_rows] + 1
    in_list = misses_before[is_match] - (np.cumsum(row_misses) - row_misses)[match_rows]
    return nth + in_list + ahead, match_rows


def _by_candidates(dist, farthest, qp, qc, labels: GalleryLabels):
    rows, cols = nonzero_2d(dist <= farthest[:, None])
    valid, is_match = labels.classify(rows, cols, qp, qc)
    rows, cols, is_match = rows[valid], cols[valid], is_match[valid]
    order = order_in_rows(dist, rows, cols)
    return _ranks_in_order(rows[order], is_match[order], 0, len(dist))


class _Buffers:
    """Work arrays of the histogram way, allocated once per block: fresh multi-megabyte
    arrays per sub-block cost page faults that outweigh the work on them."""

    def __init__(self, rows: int, cols: int) -> None:
        self.cell = np.empty((rows, cols), dtype=np.float32)
        self.flat = np.empty((rows, cols), dtype=np.int64)
        self.mask = np.empty(rows * cols, dtype=bool)


def _by_histogram(dist, farthest, qp, qc, labels: GalleryLabels, same_rows, same_cols):
    """Ranks of a block by per-row histograms, in sub-blocks that fit the caches."""
    parts = []
    starts = np.searchsorted(same_rows, np.arange(len(dist) + 1))
    blocks = list(row_blocks(len(dist), dist.shape[1], budget=SUB_BLOCK_BYTES))
    buffers = _Buffers(blocks[0][1] - blocks[0][0], dist.shape[1])
    for s, e in blocks:
        pair = slice(starts[s], starts[e])
        ranks, rows = _histogram_ranks(
            dist[s:e], farthest[s:e], qp[s:e], qc[s:e], labels,
            same_rows[pair] - s, same_cols[pair], buffers,
        )  # fmt: skip
        parts.append((ranks, rows + s))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _histogram_ranks(
    dist, farthest, qp, qc, labels: GalleryLabels, same_rows, same_cols, buffers: _Buffers
):
    b, g = dist.shape
    # Cells: floor(d * scale) is monotone in d, the farthest match lands in cell LEVELS - 2
    # at most, and everything beyond it (junk too) is put in the last cell, never counted.
    # Rows without a match have nothing to rank: all of it goes to the last cell.
    f32 = np.finfo(np.float32)
    scale = np.minimum((LEVELS - 2) / np.maximum(farthest.astype(np.float64), f32.tiny), f32.max)
    cell, flat, mask = buffers.cell[:b], buffers.flat[:b], buffers.mask[: b * g]
    with np.errstate(over="ignore"):  # far beyond the farthest match: inf, the last cell
        np.multiply(dist, scale.astype(np.float32)[:, None], out=cell)
    np.minimum(cell, LEVELS - 1, out=cell)
    if len(labels.junk):
        cell[:, labels.junk] = LEVELS - 1
    cell[farthest < 0] = LEVELS - 1
    np.copyto(flat, cell, casting="unsafe")  # truncation: the floor of non-negative values
    flat += (np.arange(b, dtype=np.int64) * LEVELS)[:, None]
    flat = flat.reshape(-1)
    histogram = np.bincount(flat, minlength=b * LEVELS)
    # Cells holding a match or an ignored item (same identity): their items are ordered
    # exactly below, so they leave the histogram.
    marks = flat[same_rows * g + same_cols]
    exact = np.zeros(b * LEVELS, dtype=bool)
    exact[marks[marks % LEVELS != LEVELS - 1]] = True
    histogram[exact] = 0
    # per cell, the items in cells up to it; at a match's cell (emptied above) exactly the
    # items in lower cells
    ahead = np.cumsum(histogram.reshape(b, LEVELS), axis=1)
    np.take(exact, flat, out=mask)
    rows, cols = np.divmod(np.flatnonzero(mask), g)
    valid, is_match = labels.classify(rows, cols, qp, qc)
    rows, cols, is_match = rows[valid], cols[valid], is_match[valid]
    order = order_in_rows(dist, rows, cols)
    rows, cols, is_match = rows[order], cols[order], is_match[order]
    match_cells = flat[rows[is_match] * g + cols[is_match]] - rows[is_match] * LEVELS
    return _ranks_in_order(rows, is_match, ahead[rows[is_match], match_cells], b)
