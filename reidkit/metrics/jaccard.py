"""k-reciprocal Jaccard distances among the items of one set, as a sparse matrix.

What clustering-based adaptation clusters on (Cluster Contrast, SpCL, MMT: DBSCAN over the
Jaccard distances of the unlabelled training set's features). The reference code builds
N x N dense matrices (4.3 GB at MSMT17's 32,621 training images); this is the re-ranking
code of :mod:`reidkit.metrics.rerank` run on the set against itself (one implementation),
keeping only the pairs whose k-reciprocal sets overlap: every other pair is at Jaccard
distance 1, farther than any DBSCAN radius below 1.

    distances = jaccard_among(features)            # Cluster Contrast's k1 30, k2 6
    labels = DBSCAN(eps=0.6, min_samples=4, metric="precomputed").fit_predict(distances)
"""

from __future__ import annotations

import numpy as np

from reidkit.errors import UsageError
from reidkit.metrics.distance import GalleryDistances, nonzero_2d
from reidkit.metrics.rerank import (
    ROW_BYTES,
    VARIANTS,
    _encode,
    _expand_locally,
    _jaccard_blocks,
    _min_overlap,
    _neighbours,
    snap,
)
from reidkit.progress import ProgressFn, no_progress


def jaccard_among(
    features: np.ndarray,
    *,
    k1: int = 30,
    k2: int = 6,
    variant: str = "cluster-contrast",
    metric: str = "euclidean",
    normalize: bool = True,
    below: float = 1.0,
    device: str = "cpu",
    progress: ProgressFn = no_progress,
):
    """Jaccard distances of k-reciprocal encodings among the rows of ``features``.

    Args:
        features: (N, D) features of one set.
        k1, k2: the neighbourhood of the k-reciprocal sets and of the local query expansion.
        variant: ``cluster-contrast`` (the clustering papers' encoding) or ``zhong`` (the
            re-ranking paper's); see :data:`reidkit.metrics.rerank.VARIANTS`.
        metric, normalize: the distance the neighbours are found with (squared by the
            algorithm); the default, euclidean of L2-normalised features, is Cluster
            Contrast's 2 - 2 cos.
        below: keep the pairs at a distance under this (at most 1). With 1, every pair whose
            sets overlap; DBSCAN with a radius under ``below`` needs no other pair, and on
            features whose neighbourhoods mix (every pair two steps apart overlaps) the pairs
            under 1 are most of the N^2.

    Returns:
        An (N, N) ``scipy.sparse.csr_matrix`` of float32 holding exactly the pairs at a
        distance under ``below``, the diagonal's zeros included (stored, so that a sparse
        precomputed DBSCAN counts each item as its own neighbour as the dense one does; an
        item with an empty encoding, one of more than k1 identical rows with k2 = 1, has
        distance 1 to everything, itself included, in both).
        Values are on re-ranking's grid of 2**-24 (the tie rule of docs/evaluation.md).
    """
    import scipy.sparse as sp

    if variant not in VARIANTS:
        raise UsageError(
            f"unknown Jaccard variant {variant!r}", hint=f"variants: {', '.join(VARIANTS)}"
        )
    if not 0.0 < below <= 1.0:
        raise UsageError(f"below must be in (0, 1], got {below}")
    if k1 < 2 or k2 < 1:
        raise UsageError(f"k1 must be at least 2 and k2 at least 1 (got k1={k1}, k2={k2})")
    n = len(features)
    if n < 2:
        raise UsageError(f"Jaccard distances need at least 2 items, got {n}")
    # the k1 + 1 nearest (zhong) or the k1 nearest (cluster-contrast), self included: at most n
    k1 = min(k1, n - 1 if variant == "zhong" else n)
    k = min(n, max(k1 + 1, k2))
    everyone = GalleryDistances(features, metric, normalize=normalize, device=device)
    feats = everyone.features
    row_max, top, top_norm, _ = _neighbours(everyone, feats, k, 0, progress)
    v = _expand_locally(
        _encode(feats, everyone.metric, row_max, top, top_norm, k1, variant), top, k2
    )
    inverted = v.T.tocsr()  # column k -> the items using it
    counts = np.zeros(n, dtype=np.int64)
    indices, values = [], []  # per block of rows, in row order: CSR's columns and data
    for start, stop in _jaccard_blocks(v, inverted, max(1, ROW_BYTES // (8 * n))):
        overlap = _min_overlap(v[start:stop], inverted, n)
        r, c = nonzero_2d(overlap > 0)
        o = overlap[r, c]
        del overlap
        d = snap(1.0 - o / (2.0 - o))  # float32 on the grid: exact below 1
        kept = d < below  # (an overlap too small for the grid is distance 1: left out)
        counts[start:stop] = np.bincount(r[kept], minlength=stop - start)
        indices.append(c[kept].astype(np.int32))
        values.append(d[kept])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return sp.csr_matrix((np.concatenate(values), np.concatenate(indices), indptr), shape=(n, n))
