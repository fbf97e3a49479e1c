"""The fast k-reciprocal re-ranking agrees with the dense reference in reference.py.

The reference is fed the three distance blocks that ``pairwise_distance`` gives between the
features; the fast code works from the features themselves. Values must agree to 1e-5 and
every row must rank the gallery in the same order (a stable sort of each side), ties
included: both follow the tie rule of docs/evaluation.md (float64 arithmetic, final values
rounded to multiples of 2**-24, equal values ranked by gallery index). Evaluating either
matrix must then give the same mAP and CMC.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_evaluate, reference_rerank

from reidkit.features.store import FeatureSet
from reidkit.metrics.distance import pairwise_distance
from reidkit.metrics.rank import evaluate_distances
from reidkit.metrics.ranking import Ranking, Rerank
from reidkit.metrics.rerank import rerank_distances

ATOL = 1e-5
RANKS = (1, 5, 10)

# examples, seed and database come from the hypothesis profile (tests/conftest.py)
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_sets(seed, num_q, num_g, dim, num_ids):
    """Clustered random features (identity centre + noise) with pids and cameras."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim))
    q_pids = rng.integers(0, num_ids, size=num_q)
    g_pids = rng.integers(0, num_ids, size=num_g)
    qf = (centres[q_pids] + 0.8 * rng.normal(size=(num_q, dim))).astype(np.float32)
    gf = (centres[g_pids] + 0.8 * rng.normal(size=(num_g, dim))).astype(np.float32)
    q_cams = rng.integers(0, 2, size=num_q)
    g_cams = rng.integers(0, 2, size=num_g)
    return qf, gf, q_pids + 1, q_cams, g_pids + 1, g_cams


def reference_on_features(qf, gf, metric, normalize, **params):
    def dist(a, b):
        return pairwise_distance(a, b, metric, normalize=normalize)

    return reference_rerank(dist(qf, gf), dist(qf, qf), dist(gf, gf), **params)


def check(seed, num_q, num_g, dim, num_ids, metric, normalize, k1, k2, lambda_value):
    qf, gf, q_pids, q_cams, g_pids, g_cams = make_sets(seed, num_q, num_g, dim, num_ids)
    params = {"k1": k1, "k2": k2, "lambda_value": lambda_value}
    expected = reference_on_features(qf, gf, metric, normalize, **params)
    got = rerank_distances(qf, gf, metric=metric, normalize=normalize, **params)
    got = np.asarray(got)
    assert got.shape == (num_q, num_g)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    assert_same_rankings(got, expected)

    # The same ranking quality from either matrix. Each evaluator is given both matrices, so
    # that this checks the re-ranking only (tie handling of the evaluator itself is
    # test_rank_exact's business; lambda 0 makes many exact ties at Jaccard distance 1).
    # Protocol "none": every query with its identity in the gallery counts.
    labels = (q_pids, q_cams, g_pids, g_cams)
    try:
        ref_expected = reference_evaluate(expected, *labels, protocol="none", max_rank=max(RANKS))
    except ValueError:
        return
    ref_got = reference_evaluate(got, *labels, protocol="none", max_rank=max(RANKS))
    assert abs(ref_got["mAP"] - ref_expected["mAP"]) <= 1e-6
    np.testing.assert_allclose(ref_got["cmc"], ref_expected["cmc"], rtol=0, atol=1e-6)
    fast_expected = evaluate_distances(expected, *labels, protocol="none", ranks=RANKS)
    fast_got = evaluate_distances(got, *labels, protocol="none", ranks=RANKS)
    assert abs(fast_got.mAP - fast_expected.mAP) <= 1e-6
    for r in RANKS:
        assert abs(fast_got.cmc[r] - fast_expected.cmc[r]) <= 1e-6


def assert_same_rankings(got, expected):
    """Every row orders the gallery identically (stable sorts, so ties by gallery index)."""
    got_order = np.argsort(got, axis=1, kind="stable")
    expected_order = np.argsort(expected, axis=1, kind="stable")
    differ = np.flatnonzero((got_order != expected_order).any(axis=1))
    assert len(differ) == 0, f"rows {differ.tolist()} rank the gallery differently"


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    num_q=st.integers(3, 30),
    num_g=st.integers(5, 60),
    dim=st.integers(8, 32),
    num_ids=st.integers(2, 12),
    metric=st.sampled_from(["euclidean", "cosine"]),
    normalize=st.booleans(),
    k1=st.sampled_from([1, 2, 3, 5, 8, 20]),
    k2=st.sampled_from([1, 2, 3, 6]),
    lambda_value=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
)
def test_random_sets_match_reference(
    seed, num_q, num_g, dim, num_ids, metric, normalize, k1, k2, lambda_value
):
    check(seed, num_q, num_g, dim, num_ids, metric, normalize, k1, k2, lambda_value)


def test_default_parameters_match_reference():
    for seed in range(3):
        qf, gf, *_ = make_sets(seed, 20, 50, 16, 8)
        expected = reference_on_features(qf, gf, "euclidean", False)  # k1=20, k2=6, lambda=0.3
        got = rerank_distances(qf, gf)
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
        assert_same_rankings(got, expected)


# Cases that failed before the tie rule: with lambda 0 the final distance is the Jaccard
# distance alone, and many values equal in exact arithmetic (0, 1/2, 1) came out of the two
# implementations' float32 sums an ulp apart (0.5 against 0.49999994), so ties broke
# differently and mAP differed (0.861 against 0.733 in CI).
TIE_CASES = [
    # seed, num_q, num_g, dim, num_ids, metric, normalize, k1, k2
    (0, 14, 40, 10, 11, "cosine", False, 5, 6),
    (0, 17, 51, 22, 2, "euclidean", True, 2, 6),
    (0, 26, 36, 27, 8, "cosine", False, 3, 3),
    (0, 7, 48, 12, 3, "cosine", True, 2, 3),
    (0, 27, 49, 9, 2, "cosine", False, 2, 6),
    (0, 16, 33, 26, 12, "euclidean", False, 8, 6),
    (0, 20, 9, 28, 4, "cosine", True, 5, 6),
    (0, 27, 47, 15, 12, "euclidean", True, 8, 3),
]


@pytest.mark.parametrize("case", TIE_CASES)
def test_mathematically_equal_jaccard_values_tie_exactly(case):
    *sizes, k1, k2 = case
    check(*sizes, k1=k1, k2=k2, lambda_value=0.0)
    qf, gf, *_ = make_sets(*sizes[:5])
    got = rerank_distances(qf, gf, metric=sizes[5], normalize=sizes[6], k1=k1, k2=k2,
                           lambda_value=0.0)  # fmt: skip
    # every value lies on the rule's grid, and the exact ties are really there
    np.testing.assert_array_equal(np.rint(got.astype(np.float64) * 2**24) / 2**24, got)
    assert max(len(row) - len(np.unique(row)) for row in got) > 0


def test_k2_one_skips_query_expansion():
    for seed in range(3):
        check(seed, 12, 40, 16, 6, "euclidean", False, k1=6, k2=1, lambda_value=0.3)
        check(seed, 12, 40, 16, 6, "cosine", False, k1=6, k2=1, lambda_value=0.3)


def test_k1_at_least_the_number_of_items():
    # k1 + 1 >= Q + G: every row's forward list is the whole set
    for seed in range(3):
        check(seed, 3, 5, 8, 2, "euclidean", False, k1=20, k2=6, lambda_value=0.3)


def test_k2_larger_than_the_number_of_items():
    # the reference's initial_rank[i, :k2] simply takes every item when k2 > Q + G
    for seed in range(3):
        check(seed, 3, 5, 8, 2, "euclidean", False, k1=20, k2=9, lambda_value=0.3)
        check(seed, 3, 5, 8, 2, "euclidean", False, k1=2, k2=12, lambda_value=0.3)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
def test_exact_ties_from_integer_features(seed, metric):
    # Small-integer features: every distance is computed exactly, whatever the code path, so
    # the many exact ties (duplicates, equal distances) must be broken exactly as the
    # reference's stable argsort breaks them (by index).
    rng = np.random.default_rng(seed)
    num_q, num_g, dim = int(rng.integers(3, 11)), int(rng.integers(5, 31)), int(rng.integers(3, 7))
    qf = rng.integers(0, 3, size=(num_q, dim)).astype(np.float32)
    gf = rng.integers(0, 3, size=(num_g, dim)).astype(np.float32)
    blocks = [pairwise_distance(a, b, metric) for a, b in ((qf, gf), (qf, qf), (gf, gf))]
    for k1, k2 in ((2, 1), (3, 3), (5, 6), (20, 6)):
        expected = reference_rerank(*blocks, k1=k1, k2=k2, lambda_value=0.3)
        got = rerank_distances(qf, gf, metric=metric, k1=k1, k2=k2, lambda_value=0.3)
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL, err_msg=f"k1={k1} k2={k2}")


@pytest.mark.parametrize("pool", ["valid", "all"])
def test_rerank_pool(pool):
    """``valid`` encodes the queries and the gallery without junk (what torchreid computes,
    having dropped junk at load); ``all`` the whole gallery. Junk then has no re-ranked
    distance (+inf) and never counts; the other items' distances are the reference's on
    the pool, and the two pools give different numbers on the same files."""
    qf, gf, q_pids, q_cams, g_pids, g_cams = make_sets(3, 20, 60, 4, 12)
    g_pids[::5] = -1  # junk
    query = FeatureSet(qf, q_pids, q_cams)
    gallery = FeatureSet(gf, g_pids, g_cams)
    params = {"k1": 8, "k2": 3, "lambda_value": 0.3}
    ranking = Ranking(metric="euclidean", protocol="market", device="cpu",
                      rerank=Rerank(k1=8, k2=3, lam=0.3, pool=pool))  # fmt: skip
    got = np.concatenate([b for _, _, b in ranking.blocks(query, gallery)])
    keep = g_pids != -1 if pool == "valid" else np.ones(len(g_pids), dtype=bool)
    expected = reference_on_features(qf, gf[keep], "euclidean", False, **params)
    np.testing.assert_allclose(got[:, keep], expected, rtol=0, atol=ATOL)
    assert_same_rankings(got[:, keep], expected)
    assert np.isinf(got[:, ~keep]).all()
    labels = (q_pids, q_cams, g_pids, g_cams)
    result = evaluate_distances(got, *labels, protocol="market")
    reference = reference_evaluate(
        expected, q_pids, q_cams, g_pids[keep], g_cams[keep], protocol="market"
    )
    assert abs(result.mAP - reference["mAP"]) <= 1e-6
    swapped = Rerank(k1=8, k2=3, lam=0.3, pool="all" if pool == "valid" else "valid")
    other = Ranking(metric="euclidean", protocol="market", device="cpu", rerank=swapped)
    other_map = evaluate_distances(
        np.concatenate([b for _, _, b in other.blocks(query, gallery)]), *labels
    ).mAP
    assert abs(other_map - result.mAP) > 1e-4


def test_tiles_and_blocks_smaller_than_the_sets_match_reference(monkeypatch):
    """At Market-1501 scale re-ranking runs in many tiles and blocks, each written into one
    reused buffer; here tiles of 16 items, distance blocks of a few rows and no cache of
    the query-gallery rows make small sets take those paths."""
    from reidkit.metrics import distance, rerank

    monkeypatch.setattr(rerank, "TILE", 16)
    monkeypatch.setattr(rerank, "CACHE_BYTES", 0)
    monkeypatch.setattr(distance, "BLOCK_BYTES", 4 * 60 * 3)  # 3 rows of 60 columns
    monkeypatch.setattr(rerank, "ROW_BYTES", 8 * 60 * 4)  # Jaccard rows: 4 queries a block
    for seed, metric, normalize in (
        (0, "euclidean", False),
        (1, "cosine", False),
        (2, "euclidean", True),
    ):
        check(seed, 23, 60, 12, 8, metric, normalize, k1=8, k2=3, lambda_value=0.3)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_plain_blocks_of_a_few_rows_are_the_distances(monkeypatch, metric):
    """Ranking.blocks writes every block into one buffer: each block, taken as it comes, is
    the distances of its rows (against numpy's elementwise formula), and ranking the blocks
    as they come (as evaluate does) gives the reference evaluator's numbers on their copies."""
    from reidkit.metrics import distance
    from reidkit.metrics.rank import RankAccumulator

    qf, gf, q_pids, q_cams, g_pids, g_cams = make_sets(4, 23, 40, 12, 8)
    monkeypatch.setattr(distance, "BLOCK_BYTES", 4 * 40 * 5)  # 5 rows of 40 columns
    ranking = Ranking(metric=metric, protocol="market", device="cpu")
    query, gallery = FeatureSet(qf, q_pids, q_cams), FeatureSet(gf, g_pids, g_cams)
    acc = RankAccumulator(q_pids, q_cams, g_pids, g_cams, protocol="market")
    starts, copies = [], []
    for start, _, block in ranking.blocks(query, gallery):
        acc.add(start, block)
        starts.append(start)
        copies.append(block.copy())
    assert starts == [0, 5, 10, 15, 20]
    q64, g64 = qf.astype(np.float64), gf.astype(np.float64)
    if metric == "cosine":
        q64 /= np.linalg.norm(q64, axis=1, keepdims=True)
        g64 /= np.linalg.norm(g64, axis=1, keepdims=True)
        expected = 1.0 - q64 @ g64.T
    else:
        expected = ((q64[:, None, :] - g64[None, :, :]) ** 2).sum(-1)
        expected = np.sqrt(expected) if metric == "euclidean" else expected
    got = np.concatenate(copies)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    reference = reference_evaluate(got, q_pids, q_cams, g_pids, g_cams, protocol="market")
    assert abs(acc.result().mAP - reference["mAP"]) <= 1e-6


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_a_gallery_read_with_spare_columns_gives_the_same_distances(tmp_path, metric):
    """evaluate reads the gallery with room for its norms: the euclidean distances then
    extend it in place (no copy of the gallery), cosine normalises a copy; the distances
    are those of a plain gallery, bit for bit, and the features read stay as they were."""
    from reidkit.features.store import read_features
    from reidkit.features.writer import write_features
    from reidkit.metrics.distance import GalleryDistances

    qf, gf, _, _, g_pids, g_cams = make_sets(5, 9, 30, 16, 6)
    write_features(tmp_path / "g.h5", gf, g_pids, g_cams)
    wide = read_features(tmp_path / "g.h5", spare_columns=GalleryDistances.EXTRA_COLUMNS)
    distances = GalleryDistances(wide.features, metric)
    plain = GalleryDistances(gf.copy(), metric)
    assert np.shares_memory(distances._g, wide.features) == (metric != "cosine")
    assert np.array_equal(wide.features, gf)
    q = distances.prepare(qf)
    assert np.array_equal(distances.block(q), plain.block(plain.prepare(qf)))
    # a caller's own wider array is never written to: only read_features' arrays have room
    wider = np.concatenate([gf, np.full((len(gf), 2), 7.0, np.float32)], axis=1)
    GalleryDistances(wider[:, :16], metric)
    assert (wider[:, 16:] == 7.0).all()


@pytest.mark.parametrize("shape", [(300, 40), (37, 500), (64, 64)])
def test_smallest_down_the_columns_is_smallest_of_the_transpose(shape):
    """Re-ranking reads the second side of each tile down its columns: per column, the k
    smallest values and their rows in (value, row) order, as a stable argsort of each row of
    the transpose gives them, ties and bounds included."""
    from reidkit.metrics.rerank import smallest

    rng = np.random.default_rng(shape[0])
    block = rng.integers(0, 50, size=shape).astype(np.float32)  # many ties
    k = 5
    bound = np.sort(block, axis=0)[3].copy()  # some columns have fewer than k under it
    bound[::3] = np.inf
    for b in (None, bound):
        cols, values = smallest(block, k, b, transposed=True)
        order = np.argsort(block.T, axis=1, kind="stable")[:, :k]
        expected_values = np.take_along_axis(block.T, order, axis=1)
        if b is not None:
            over = expected_values > b[:, None]
            order, expected_values = (
                np.where(over, -1, order),
                np.where(over, np.inf, expected_values),
            )
        assert np.array_equal(cols, order) and np.array_equal(values, expected_values)
        copied_cols, copied_values = smallest(block.T.copy(), k, b)
        assert np.array_equal(cols, copied_cols) and np.array_equal(values, copied_values)
