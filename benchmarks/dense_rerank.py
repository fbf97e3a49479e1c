"""Baseline (b) of bench_evaluate.py: k-reciprocal re-ranking the way the widely used
reference implementation does it (Zhong et al., CVPR 2017), with dense (Q+G)^2 arrays.

Its structure, written here for measurement only: the all-vs-all matrix squared and divided
by its row maxima; a full argsort of every row; a dense V filled row by row with the
expanded k-reciprocal sets; dense local query expansion; an inverted index built from V's
columns; Jaccard overlaps accumulated over each query's non-zero entries. The test suite's
own reference (tests/metrics/reference.py) favours clarity over speed and is not meant to
be timed.
"""

from __future__ import annotations

import numpy as np


def _reciprocal(initial_rank: np.ndarray, i: int, k: int) -> np.ndarray:
    forward = initial_rank[i, : k + 1]
    backward = initial_rank[forward, : k + 1]
    return forward[np.where(backward == i)[0]]


def _dense_encoding(original, initial_rank, k: int, half: int) -> np.ndarray:
    """The dense V: each row's k-reciprocal set, expanded by its members' half-reciprocal
    sets that share more than 2/3 with it, weighted exp(-original) and normalised."""
    n = original.shape[0]
    v = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        recip = _reciprocal(initial_rank, i, k)
        expansion = recip
        for candidate in recip:
            cand_recip = _reciprocal(initial_rank, candidate, half)
            if len(np.intersect1d(cand_recip, recip)) > 2.0 / 3 * len(cand_recip):
                expansion = np.append(expansion, cand_recip)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        v[i, expansion] = weight / np.sum(weight)
    return v


def dense_rerank(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3) -> np.ndarray:
    """Re-ranked (Q, G) distances from dense distance matrices."""
    nq = q_g.shape[0]
    original = np.concatenate(
        [np.concatenate([q_q, q_g], axis=1), np.concatenate([q_g.T, g_g], axis=1)], axis=0
    )
    original = np.power(original, 2).astype(np.float32)
    original = np.transpose(original / np.max(original, axis=0))
    n = original.shape[0]
    initial_rank = np.argsort(original).astype(np.int32)
    v = _dense_encoding(original, initial_rank, k1, int(np.around(k1 / 2.0)))
    original = original[:nq]
    if k2 != 1:
        v_qe = np.zeros_like(v, dtype=np.float32)
        for i in range(n):
            v_qe[i] = np.mean(v[initial_rank[i, :k2], :], axis=0)
        v = v_qe
        del v_qe
    del initial_rank
    inverted = [np.where(v[:, j] != 0)[0] for j in range(n)]
    jaccard = np.zeros_like(original, dtype=np.float32)
    for i in range(nq):
        overlap = np.zeros(n, dtype=np.float32)
        nonzero = np.where(v[i] != 0)[0]
        for k in nonzero:
            rows = inverted[k]
            overlap[rows] += np.minimum(v[i, k], v[rows, k])
        jaccard[i] = 1 - overlap / (2.0 - overlap)
    final = jaccard * (1 - lambda_value) + original * lambda_value
    return final[:, nq:]


def dense_jaccard_among(dist: np.ndarray, k1: int = 30, k2: int = 6) -> np.ndarray:
    """Baseline of bench_jaccard.py: Jaccard distances among one set the way the clustering
    papers' reference code computes them (Cluster Contrast's encoding: reciprocal sets among
    the k1 nearest, self included; weights a softmax of -d^2), with dense N x N arrays: the
    neighbour order, V, V after query expansion and the Jaccard matrix."""
    sq = np.power(dist, 2).astype(np.float32)
    n = sq.shape[0]
    # the k1 nearest, self included (ties by index: the reference leaves their order to chance)
    initial_rank = np.argsort(sq, kind="stable")[:, :k1].astype(np.int32)
    v = _dense_encoding(sq, initial_rank, k1 - 1, int(np.around(k1 / 2.0)))
    del sq
    if k2 != 1:
        v_qe = np.zeros_like(v)
        for i in range(n):
            v_qe[i] = np.mean(v[initial_rank[i, :k2], :], axis=0)
        v = v_qe
        del v_qe
    inverted = [np.where(v[:, j] != 0)[0] for j in range(n)]
    jaccard = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        overlap = np.zeros(n, dtype=np.float32)
        for k in np.where(v[i] != 0)[0]:
            rows = inverted[k]
            overlap[rows] += np.minimum(v[i, k], v[rows, k])
        jaccard[i] = 1 - overlap / (2.0 - overlap)
    return np.maximum(jaccard, 0.0)
