"""Slow, plainly written reference implementations of the evaluation metrics.

These exist only to check the fast code in ``reidkit.metrics`` against. They favour being
obviously right over being fast: full sorts, dense matrices, one query at a time.

* :func:`reference_evaluate` -- CMC, mAP and mINP under the Market-1501 rules (same-identity
  same-camera gallery items do not count), the CUHK03 single-gallery-shot CMC, or no camera
  rule at all; gallery items with identity -1 (junk) never count.
* :func:`reference_rerank` -- k-reciprocal re-ranking (Zhong et al., CVPR 2017).
"""

from __future__ import annotations

import numpy as np

PROTOCOLS = ("market", "cuhk03", "none")


# --------------------------------------------------------------------------- ranking metrics


def valid_gallery_mask(q_pid, q_camid, g_pids, g_camids, protocol):
    """Boolean mask over the gallery: True for the items that take part in this query's ranking."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    keep = g_pids != -1  # junk never counts
    if protocol in ("market", "cuhk03"):
        same_view = (g_pids == q_pid) & (g_camids == q_camid)
        keep = keep & ~same_view
    return keep


def clipped_cmc(matches, max_rank):
    """1 from the first match on, 0 before it; length max_rank, padded with the last value."""
    matches = np.asarray(matches, dtype=np.int64)
    curve = np.minimum(np.cumsum(matches), 1).astype(np.float64)
    if len(curve) >= max_rank:
        return curve[:max_rank]
    out = np.empty(max_rank, dtype=np.float64)
    out[: len(curve)] = curve
    out[len(curve) :] = curve[-1] if len(curve) else 0.0
    return out


def average_precision(matches):
    """(1/P) * sum_k k / r_k over the 1-based ranks r_1 < ... < r_P of the P matches."""
    ranks = np.flatnonzero(matches) + 1
    hits = np.arange(1, len(ranks) + 1)
    return float(np.mean(hits / ranks))


def inverse_negative_penalty(matches):
    """P / r_P: the number of matches over the rank of the last (hardest) one."""
    ranks = np.flatnonzero(matches) + 1
    return float(len(ranks) / ranks[-1])


def single_shot_gallery(valid_index, g_pids, rng):
    """Draw one gallery item per identity, exactly as the CUHK03 protocol prescribes.

    ``valid_index`` holds the query's valid gallery indices; they are taken in ascending index
    order and grouped by identity (groups in ascending identity order).  One call
    ``rng.integers(0, counts)`` picks a position within every group.  Returns the kept gallery
    indices in ascending index order.
    """
    valid_index = np.sort(np.asarray(valid_index))
    group_pids = np.unique(g_pids[valid_index])  # ascending
    groups = [valid_index[g_pids[valid_index] == pid] for pid in group_pids]
    counts = np.array([len(group) for group in groups], dtype=np.int64)
    picks = rng.integers(0, counts)
    kept = [group[pick] for group, pick in zip(groups, picks, strict=True)]
    return np.sort(np.array(kept, dtype=np.int64))


def reference_evaluate(
    distmat,
    q_pids,
    q_camids,
    g_pids,
    g_camids,
    *,
    protocol="market",
    max_rank=50,
    seed=0,
    repeats=10,
):
    """CMC (length max_rank), mAP, mINP, per-query AP and first-match rank; see the module doc."""
    distmat = np.asarray(distmat)
    q_pids = np.asarray(q_pids)
    q_camids = np.asarray(q_camids)
    g_pids = np.asarray(g_pids)
    g_camids = np.asarray(g_camids)
    num_q = distmat.shape[0]
    rng = np.random.default_rng(seed)

    ap = np.full(num_q, np.nan)
    first_match = np.full(num_q, -1, dtype=np.int64)
    cmcs, aps, inps = [], [], []
    for i in range(num_q):
        keep = valid_gallery_mask(q_pids[i], q_camids[i], g_pids, g_camids, protocol)
        order = np.argsort(distmat[i], kind="stable")
        ranked = order[keep[order]]  # valid gallery indices, nearest first
        matches = g_pids[ranked] == q_pids[i]
        if not matches.any():
            continue  # no correct match anywhere: the query does not count

        ap[i] = average_precision(matches)
        first_match[i] = int(np.flatnonzero(matches)[0]) + 1
        aps.append(ap[i])
        inps.append(inverse_negative_penalty(matches))

        if protocol == "cuhk03":
            curves = []
            for _ in range(repeats):
                kept = single_shot_gallery(np.flatnonzero(keep), g_pids, rng)
                sampled = kept[np.argsort(distmat[i, kept], kind="stable")]
                curves.append(clipped_cmc(g_pids[sampled] == q_pids[i], max_rank))
            cmcs.append(np.mean(curves, axis=0))
        else:
            cmcs.append(clipped_cmc(matches, max_rank))

    if not cmcs:
        raise ValueError("no query has a correct match in the gallery")
    return {
        "cmc": np.mean(cmcs, axis=0),
        "mAP": float(np.mean(aps)),
        "mINP": float(np.mean(inps)),
        "ap": ap,
        "first_match": first_match,
        "num_valid_query": len(cmcs),
    }


# --------------------------------------------------------------------------- re-ranking


def half_k(k1):
    """The neighbourhood size used for the expansion candidates: np.around(k1/2) (half to even)."""
    return int(np.around(k1 / 2.0))


def k_reciprocal_neighbors(initial_rank, i, k):
    """Items f among i's k+1 nearest (self included) that have i among their own k+1 nearest.

    Returned in the order of i's ranking.
    """
    forward = initial_rank[i, : k + 1]
    keep = [f for f in forward if i in initial_rank[f, : k + 1]]
    return np.array(keep, dtype=np.int64)


def expanded_neighbors(initial_rank, i, k1, half=None):
    """R*: the k-reciprocal set of i, grown by every candidate's half-size reciprocal set that
    shares more than two thirds of its members with it; sorted and unique. ``half``: the
    candidates' neighbourhood size (default half_k(k1))."""
    base = k_reciprocal_neighbors(initial_rank, i, k1)
    pieces = [base]
    for candidate in base:
        near = k_reciprocal_neighbors(initial_rank, candidate, half_k(k1) if half is None else half)
        shared = np.intersect1d(near, base)
        if len(shared) > 2.0 / 3.0 * len(near):
            pieces.append(near)
    return np.unique(np.concatenate(pieces))


def reference_rerank(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3):
    """k-reciprocal re-ranked query-gallery distances (Q, G), float32."""
    q_g = np.asarray(q_g)
    q_q = np.asarray(q_q)
    g_g = np.asarray(g_g)
    num_q, num_g = q_g.shape
    n = num_q + num_g

    # 1-2. all-vs-all squared distances, each row divided by its maximum
    full = np.zeros((n, n), dtype=np.float64)
    full[:num_q, :num_q] = q_q
    full[:num_q, num_q:] = q_g
    full[num_q:, :num_q] = q_g.T
    full[num_q:, num_q:] = g_g
    full = full.astype(np.float32)
    full = (full**2).astype(np.float32)
    original_dist = np.empty_like(full)
    for row in range(n):
        original_dist[row] = full[row] / full[row].max()

    # 3. neighbour order of every item
    initial_rank = np.argsort(original_dist, axis=1, kind="stable")

    # 4. k-reciprocal encoding with expansion and Gaussian weights
    V = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        members = expanded_neighbors(initial_rank, i, k1)
        weight = np.exp(-original_dist[i, members].astype(np.float64))
        V[i, members] = weight / np.sum(weight)

    # 5. local query expansion over the k2 nearest (self included)
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(n):
            V_qe[i] = np.mean(V[initial_rank[i, :k2]], axis=0)
        V = V_qe

    # 6. Jaccard distance of every query row to every item
    jaccard = np.zeros((num_q, n), dtype=np.float64)
    for i in range(num_q):
        # overlap[j] = sum_k min(V[i, k], V[j, k])
        overlap = np.sum(np.minimum(V[i][None, :], V), axis=1)
        jaccard[i] = 1.0 - overlap / (2.0 - overlap)

    # 7. blend with the original distances
    final = jaccard * (1 - lambda_value) + original_dist[:num_q] * lambda_value

    # 8. the tie rule (reidkit's, documented in docs/evaluation.md): values computed in float64
    # are rounded to the nearest multiple of 2**-24, so that values equal in exact arithmetic
    # are equal, whatever order their terms were summed in
    final = np.maximum(np.round(final * 2.0**24), 0.0) / 2.0**24
    return final[:, num_q:].astype(np.float32)


def reference_jaccard_among(dist, k1=30, k2=6, variant="cluster-contrast"):
    """Dense (N, N) Jaccard distances among one set, from its (N, N) distance matrix.

    ``zhong``: the re-ranking paper's encoding as in reference_rerank (the k1 + 1 nearest,
    weights exp(-d^2 / the row's largest d^2)). ``cluster-contrast``: the clustering papers'
    (reciprocal sets among the k1 nearest, self included, expanded by the candidates'
    round(k1/2)-reciprocal sets; weights a softmax of -d^2). Local query expansion over
    the k2 nearest; the tie rule's grid of 2**-24; 1.0 where two sets share nothing."""
    sq = (np.asarray(dist, dtype=np.float32) ** 2).astype(np.float32)
    n = len(sq)
    if variant == "zhong":
        original = np.stack([row / row.max() for row in sq]).astype(np.float32)
        base_k = k1
    else:
        original = sq
        base_k = k1 - 1
    initial_rank = np.argsort(original, axis=1, kind="stable")
    V = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        members = expanded_neighbors(initial_rank, i, base_k, half=half_k(k1))
        weight = np.exp(-original[i, members].astype(np.float64))
        V[i, members] = weight / np.sum(weight)
    if k2 != 1:
        V = np.stack([np.mean(V[initial_rank[i, :k2]], axis=0) for i in range(n)])
    out = np.ones((n, n), dtype=np.float64)
    for i in range(n):
        overlap = np.sum(np.minimum(V[i][None, :], V), axis=1)
        shared = overlap > 0
        jaccard = 1.0 - overlap[shared] / (2.0 - overlap[shared])
        out[i, shared] = np.maximum(np.round(jaccard * 2.0**24), 0.0) / 2.0**24
    return out
