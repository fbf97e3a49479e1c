"""k-reciprocal re-ranking in O((Q+G) * k) memory.

Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017.
The reference algorithm builds several dense (Q+G)^2 arrays. This module computes exactly
the same result from what the algorithm really uses:

1. One blocked pass over the all-vs-all distances (queries and gallery together, as in the
   reference) keeps, for every item, the maximum of its squared distances (the reference
   divides each row by it) and its k1+1 nearest neighbours.
2. k1-reciprocal sets, their expansion by the candidates' round(k1/2)-reciprocal sets that
   overlap by more than 2/3, and the Gaussian weights form a sparse matrix V (about
   (Q+G) * 2k non-zeros); weights of expanded members that are not among an item's nearest
   neighbours come from their exact pairwise distance.
3. Local query expansion (the mean of the k2 nearest neighbours' rows) is a sparse product.
4. For a block of queries at a time, the Jaccard overlaps sum_k min(V_ik, V_jk) with every
   gallery item j come from V's inverted index, and the final distance is
   (1 - lambda) * jaccard + lambda * original, yielded block by block.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from reidkit.metrics.distance import (
    BlockBuffer,
    GalleryDistances,
    nonzero_2d,
    row_blocks,
    rows_with_room,
)
from reidkit.progress import ProgressFn, no_progress

PAIR_BUDGET = 2_000_000  # Jaccard (query, gallery) pairs expanded at once
ROW_BYTES = 64 * 2**20  # Jaccard accumulator (float64) per block of queries
CACHE_BYTES = 512 * 2**20  # keep the query-gallery block of pass 1 when it fits
GRID = 2.0**-24  # final distances are multiples of this (exact in float32 below 1)


def smallest(
    block: np.ndarray, k: int, bound: np.ndarray | None = None, *, transposed: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column indices and values of the k smallest values, ordered by (value,
    column) like a stable argsort; rows with fewer than k values under ``bound`` are padded
    with (-1, inf). ``transposed``: the same for the rows of ``block.T`` (the columns of
    ``block``), without copying the transpose, which costs more than the rest here.

    The k-th smallest of a row's group minima bounds its k-th smallest value from above
    (k distinct elements are at most that large), so only values under the bound are sorted.
    """
    b, n = block.shape[::-1] if transposed else block.shape
    group = min(32, n // (4 * k))
    if group >= 2:
        full = n - n % group
        # groups of columns j, j + m, j + 2m, ... (of rows, transposed): reductions numpy
        # vectorises well
        if transposed:
            minima = block[:full].reshape(group, -1, b).min(0)
            group_bound = np.partition(minima, k - 1, axis=0)[k - 1]
        else:
            minima = block[:, :full].reshape(b, group, -1).min(1)
            group_bound = np.partition(minima, k - 1, axis=1)[:, k - 1]
        bound = group_bound if bound is None else np.minimum(bound, group_bound)
    elif bound is None:
        bound = np.full(b, np.inf, dtype=block.dtype)
    if transposed:
        cols, rows = nonzero_2d(block <= bound[None, :])
        values = block[cols, rows]
    else:
        rows, cols = nonzero_2d(block <= bound[:, None])
        values = block[rows, cols]
    order = np.lexsort((cols, values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    per_row = np.bincount(rows, minlength=b)
    rank = np.arange(len(rows)) - (np.cumsum(per_row) - per_row)[rows]
    keep = rank < k
    out_cols = np.full((b, k), -1, dtype=np.int64)
    out_values = np.full((b, k), np.inf, dtype=block.dtype)
    out_cols[rows[keep], rank[keep]] = cols[keep]
    out_values[rows[keep], rank[keep]] = values[keep]
    return out_cols, out_values


def _merge(idx_a, val_a, idx_b, val_b, k: int):
    """The k smallest of two candidate lists per row, ordered by (value, index)."""
    idx = np.concatenate([idx_a, idx_b], axis=1)
    val = np.concatenate([val_a, val_b], axis=1)
    order = np.lexsort((idx, val), axis=1)[:, :k]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(val, order, axis=1)


TILE = 2048


def _neighbours(
    all_feats: GalleryDistances, feats: np.ndarray, k: int, queries: int, progress: ProgressFn
):
    """Row maxima of squared distances, the k nearest neighbours per row (with their
    normalised squared distances), and the normalised query-gallery rows when they fit in
    memory.

    The all-vs-all matrix is symmetric, so each tile (I, J) with J >= I is computed once and
    serves rows I and, transposed, rows J.
    """
    n = len(feats)
    top = np.full((n, k), -1, dtype=np.int64)
    top_val = np.full((n, k), np.inf, dtype=np.float32)
    row_max = np.zeros(n, dtype=np.float32)
    cache = (
        np.empty((queries, n - queries), dtype=np.float32)
        if queries * (n - queries) * 4 <= CACHE_BYTES
        else None
    )
    tiles = [(s, min(n, s + TILE)) for s in range(0, n, TILE)]
    done, total = 0, len(tiles) * (len(tiles) + 1) // 2
    tile = BlockBuffer()  # memory touched once, not per tile
    for a, (i0, i1) in enumerate(tiles):
        for j0, j1 in tiles[a:]:
            sq = all_feats.block(feats[i0:i1], slice(j0, j1), out=tile.get(i1 - i0, j1 - j0))
            np.multiply(sq, sq, out=sq)
            # rows I, and rows J read down the columns (a copy of the transpose costs more)
            sides = [(i0, i1, j0, False)] + ([(j0, j1, i0, True)] if j0 != i0 else [])
            for r0, r1, c0, transposed in sides:
                row_max[r0:r1] = np.maximum(row_max[r0:r1], sq.max(0 if transposed else 1))
                idx, val = smallest(sq, k, bound=top_val[r0:r1, -1], transposed=transposed)
                idx[idx >= 0] += c0
                top[r0:r1], top_val[r0:r1] = _merge(top[r0:r1], top_val[r0:r1], idx, val, k)
                # query rows against gallery columns: only on a tile's own side (J >= I, so
                # the transposed side's rows are queries only on the diagonal, which has none)
                if cache is None or transposed or r0 >= queries or j1 <= queries:
                    continue
                rows = slice(r0, min(r1, queries))
                cols = slice(max(c0, queries), j1)
                cache[rows, cols.start - queries : cols.stop - queries] = sq[
                    : rows.stop - r0, cols.start - c0 : cols.stop - c0
                ]
            done += 1
            progress(done, total)
    row_max = np.maximum(row_max, np.float32(np.finfo(np.float32).tiny))
    top_norm = top_val / row_max[:, None]
    if cache is not None:
        cache /= row_max[:queries, None]
    return row_max, top, top_norm, cache


def _reciprocal(top: np.ndarray, k: int) -> np.ndarray:
    """k-reciprocal neighbours: top[:, :k+1] where the neighbour has the row among its own
    k+1 nearest; -1 elsewhere (order kept)."""
    near = top[:, : k + 1]
    rows = np.arange(len(top))[:, None, None]
    is_recip = (near[near] == rows).any(axis=2)
    return np.where(is_recip, near, -1)


def _pair_norm(feats: np.ndarray, metric: str, row_max: np.ndarray, i: np.ndarray, j: np.ndarray):
    """Normalised squared distances of arbitrary pairs (i, j), as pass 1 computes them."""
    out = np.empty(len(i), dtype=np.float32)
    sq_norms = np.einsum("ij,ij->i", feats, feats)
    step = max(1, (64 * 2**20) // (8 * feats.shape[1]))  # two gathered float32 rows a pair
    for s in range(0, len(i), step):
        a, b = feats[i[s : s + step]], feats[j[s : s + step]]
        d = np.einsum("ij,ij->i", a, b)
        if metric == "cosine":
            np.subtract(np.float32(1.0), d, out=d)
        else:
            d *= -2.0
            d += sq_norms[i[s : s + step]] + sq_norms[j[s : s + step]]
        np.maximum(d, 0.0, out=d)
        if metric == "euclidean":
            np.sqrt(d, out=d)
        out[s : s + step] = d
    return (out * out) / row_max[i]


def _expansion(recip: np.ndarray, recip_half: np.ndarray) -> np.ndarray:
    """For each row, the half-reciprocal sets of its reciprocal neighbours that overlap the
    row's own reciprocal set by more than 2/3 of their size (-1 padded, (n, K * H))."""
    n, width = recip.shape
    out = np.empty((n, width * recip_half.shape[1]), dtype=np.int64)
    for start, stop in row_blocks(n, width * recip_half.shape[1] * width, budget=256 * 2**20):
        r = recip[start:stop]  # (b, K)
        cand = np.where((r >= 0)[:, :, None], recip_half[np.maximum(r, 0)], -1)  # (b, K, H)
        size = (cand >= 0).sum(2)
        inside = (cand[:, :, :, None] == r[:, None, None, :]).any(3) & (cand >= 0)
        accept = (inside.sum(2) > 2.0 / 3.0 * size) & (size > 0)
        out[start:stop] = np.where(accept[:, :, None], cand, -1).reshape(stop - start, -1)
    return out


# how the k-reciprocal encoding is built: Zhong et al.'s (re-ranking: k1-reciprocal sets
# among the k1 + 1 nearest, self included; weights exp(-d^2 / the row's largest d^2)), or
# Cluster Contrast's for clustering (among the k1 nearest, self included; weights
# exp(-d^2): a softmax of -d^2 over each expanded set). Both expand by the round(k1 / 2)-
# reciprocal sets of the members and normalise each row's weights to sum 1.
VARIANTS = ("zhong", "cluster-contrast")


def _encode(feats, metric, row_max, top, top_norm, k1: int, variant: str = "zhong"):
    """The sparse k-reciprocal feature matrix V (CSR, float64)."""
    import scipy.sparse as sp

    n = len(top)
    recip = _reciprocal(top, k1 if variant == "zhong" else k1 - 1)
    members = np.concatenate(
        [recip, _expansion(recip, _reciprocal(top, int(np.around(k1 / 2))))], axis=1
    )
    members.sort(axis=1)
    keep = members >= 0
    keep[:, 1:] &= members[:, 1:] != members[:, :-1]
    rows = np.nonzero(keep)[0]
    cols = members[keep]
    # exp(-original_dist[i, j]): from the neighbour list when j is on it, else recomputed.
    listed = top[rows] == cols[:, None]
    found = listed.any(1)
    norm = np.empty(len(rows), dtype=np.float32)
    norm[found] = top_norm[rows[found], listed[found].argmax(1)]
    norm[~found] = _pair_norm(feats, metric, row_max, rows[~found], cols[~found])
    if variant == "cluster-contrast":  # the squared distance itself, not over the row's max
        norm = norm.astype(np.float64) * row_max[rows]
    weight = np.exp(-norm.astype(np.float64))
    weight /= np.bincount(rows, weights=weight, minlength=n)[rows]
    return sp.csr_matrix((weight, (rows, cols)), shape=(n, n), dtype=np.float64)


def rerank_blocks(
    query: np.ndarray,
    gallery: np.ndarray,
    *,
    metric: str = "euclidean",
    normalize: bool = False,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    device: str = "cpu",
    progress: ProgressFn = no_progress,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Re-ranked query-gallery distances, one block of query rows at a time.

    Yields:
        (start, stop, distances) with distances of shape (stop - start, G), float32.
    """

    nq, ng = len(query), len(gallery)
    n = nq + ng
    k = min(n, max(k1 + 1, k2))
    # queries and gallery in one array with room for the norms (GalleryDistances extends
    # it in place instead of copying it again)
    both = rows_with_room(n, query.shape[1], GalleryDistances.EXTRA_COLUMNS)
    both[:nq], both[nq:] = query, gallery
    all_feats = GalleryDistances(both, metric, normalize=normalize, device=device)
    feats = all_feats.features
    row_max, top, top_norm, cache = _neighbours(all_feats, feats, k, nq, progress)
    v = _encode(feats, all_feats.metric, row_max, top, top_norm, min(k1, n - 1))
    v = _expand_locally(v, top, k2)
    v_query = v[:nq]
    inverted = v[nq:].T.tocsr()  # column k -> the gallery items using it
    for start, stop in _jaccard_blocks(v_query, inverted, max(1, ROW_BYTES // (8 * ng))):
        overlap = _min_overlap(v_query[start:stop], inverted, ng)
        jaccard = 1.0 - overlap / (2.0 - overlap)
        if cache is not None:
            original = cache[start:stop]
        else:
            original = all_feats.block(feats[start:stop])[:, nq:]
            np.multiply(original, original, out=original)
            original /= row_max[start:stop, None]
        yield start, stop, snap(jaccard * (1 - lambda_value) + original * lambda_value)


def _expand_locally(v, top: np.ndarray, k2: int):
    """Local query expansion: each row of V replaced by the mean of its k2 nearest items'
    rows (self included); k2 = 1 leaves V as it is."""
    import scipy.sparse as sp

    if k2 == 1:
        return v
    n = v.shape[0]
    k2 = min(k2, n)  # the reference's mean over initial_rank[i, :k2] takes what there is
    qe = sp.csr_matrix(
        (np.full(n * k2, 1.0 / k2, dtype=np.float64), top[:, :k2].ravel(),
         np.arange(0, n * k2 + 1, k2)),
        shape=(n, n),
    )  # fmt: skip
    return (qe @ v).tocsr()


def snap(final: np.ndarray) -> np.ndarray:
    """Re-ranked distances (float64, in [0, 1]) on the grid of multiples of GRID, as float32.

    The tie rule: values that are equal in exact arithmetic (Jaccard distances 0, 1/2, 1 are
    common) come out of float64 sums a few 1e-16 apart in an order that depends on how the
    terms were added. On a grid much coarser than that error and much finer than any real
    difference they become equal, and equal distances rank by gallery index.
    """
    out = np.rint(final * (1.0 / GRID))
    np.maximum(out, 0.0, out=out)
    out *= GRID
    return out.astype(np.float32)


def _jaccard_blocks(v_query, inverted, max_rows: int) -> Iterator[tuple[int, int]]:
    """Query ranges of at most ``max_rows`` whose expanded (query, gallery) pairs stay
    within PAIR_BUDGET."""
    lengths = np.diff(inverted.indptr)
    pairs = (
        np.add.reduceat(lengths[v_query.indices], v_query.indptr[:-1])
        if v_query.nnz
        else np.zeros(v_query.shape[0], dtype=np.int64)
    )
    pairs = np.where(np.diff(v_query.indptr) > 0, pairs, 0)
    start = total = 0
    for i, p in enumerate(pairs):
        if total and (total + p > PAIR_BUDGET or i - start >= max_rows):
            yield start, i
            start, total = i, 0
        total += p
    yield start, len(pairs)


def _min_overlap(rows, inverted, ng: int) -> np.ndarray:
    """(b, G) sums over k of min(V_ik, V_jk) for the query rows and every gallery item j."""
    b = rows.shape[0]
    r = np.repeat(np.arange(b), np.diff(rows.indptr))
    k, a = rows.indices, rows.data
    lengths = inverted.indptr[k + 1] - inverted.indptr[k]
    total = int(lengths.sum())
    offsets = np.repeat(inverted.indptr[k] - (np.cumsum(lengths) - lengths), lengths)
    pos = offsets + np.arange(total)
    j = inverted.indices[pos]
    vals = np.minimum(np.repeat(a, lengths), inverted.data[pos])
    acc = np.bincount(np.repeat(r, lengths) * ng + j, weights=vals, minlength=b * ng)
    return acc.reshape(b, ng)


def rerank_distances(query: np.ndarray, gallery: np.ndarray, **kwargs) -> np.ndarray:
    """The whole (Q, G) re-ranked distance matrix (for small sets and tests)."""
    out = np.empty((len(query), len(gallery)), dtype=np.float32)
    for start, stop, block in rerank_blocks(query, gallery, **kwargs):
        out[start:stop] = block
    return out
