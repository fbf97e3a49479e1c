"""Hand-worked checks of the reference implementations in reference.py.

Every expected number below is worked out by hand in the comment next to it, so that the
references the exactness tests lean on can be trusted on their own.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import (
    average_precision,
    clipped_cmc,
    expanded_neighbors,
    half_k,
    inverse_negative_penalty,
    k_reciprocal_neighbors,
    reference_evaluate,
    reference_rerank,
    single_shot_gallery,
)

# --------------------------------------------------------------------------- building blocks


def test_ap_inp_and_cmc_of_a_match_list():
    # matches at ranks 2 and 5: AP = (1/2)(1/2 + 2/5) = 0.45, INP = 2/5 = 0.4
    matches = [0, 1, 0, 0, 1]
    assert average_precision(matches) == pytest.approx(0.45)
    assert inverse_negative_penalty(matches) == pytest.approx(0.4)
    assert clipped_cmc(matches, 3).tolist() == [0, 1, 1]
    # padded with the last value past the end of the list
    assert clipped_cmc(matches, 7).tolist() == [0, 1, 1, 1, 1, 1, 1]
    # a single match at rank 1: AP = INP = 1
    assert average_precision([1, 0, 0]) == 1.0
    assert inverse_negative_penalty([1, 0, 0]) == 1.0


# --------------------------------------------------------------------------- one query by hand

# One query, identity 1, camera 0. Gallery (index: pid, cam, distance):
#   g0: 1, 0, 0.10   same pid and camera -> removed under market/cuhk03, kept under none
#   g1: 2, 1, 0.20
#   g2: 1, 1, 0.30
#   g3: -1, 1, 0.05  junk -> removed under every protocol
#   g4: 3, 0, 0.40
#   g5: 1, 2, 0.50
G_PIDS = np.array([1, 2, 1, -1, 3, 1])
G_CAMS = np.array([0, 1, 1, 1, 0, 2])
DIST = np.array([[0.10, 0.20, 0.30, 0.05, 0.40, 0.50]])


def test_market_rules_by_hand():
    # remaining, nearest first: g1(2) g2(1) g4(3) g5(1) -> matches 0 1 0 1
    # AP = (1/2)(1/2 + 2/4) = 0.5; INP = 2/4 = 0.5; first match at rank 2
    out = reference_evaluate(DIST, [1], [0], G_PIDS, G_CAMS, protocol="market", max_rank=6)
    assert out["cmc"].tolist() == [0, 1, 1, 1, 1, 1]  # list of 4, padded to 6 with its last value
    assert out["mAP"] == pytest.approx(0.5)
    assert out["mINP"] == pytest.approx(0.5)
    assert out["first_match"].tolist() == [2]
    assert out["num_valid_query"] == 1


def test_no_camera_rule_by_hand():
    # only the junk g3 goes: g0(1) g1(2) g2(1) g4(3) g5(1) -> matches 1 0 1 0 1
    # AP = (1/3)(1/1 + 2/3 + 3/5) = 34/45; INP = 3/5; first match at rank 1
    out = reference_evaluate(DIST, [1], [0], G_PIDS, G_CAMS, protocol="none", max_rank=3)
    assert out["cmc"].tolist() == [1, 1, 1]
    assert out["mAP"] == pytest.approx(34 / 45)
    assert out["mINP"] == pytest.approx(0.6)
    assert out["first_match"].tolist() == [1]


def test_query_whose_identity_is_absent_is_skipped():
    # identity 9 is not in the gallery: no match under any protocol, so the only query is
    # skipped and the evaluation refuses to produce numbers.
    with pytest.raises(ValueError):
        reference_evaluate(DIST, [9], [0], G_PIDS, G_CAMS, protocol="none")


def test_two_queries_one_skipped_by_hand():
    # q0 = the query above (market: first match at rank 2, AP 0.5, INP 0.5).
    # q1: identity 3, camera 0: its only gallery image g4 is in camera 0 -> removed -> skipped.
    # q2: identity 2, camera 0: remaining g0(1) g1(2) g2(1) g4(3) g5(1) (nothing removed,
    #     g3 junk) with its own distances (g1 = 0.01 nearest): g1(2) g0(1) g2(1) g4(3) g5(1)
    #     -> matches 1 0 0 0 0 -> first match rank 1, AP = INP = 1.
    dist = np.vstack([DIST[0], DIST[0], [0.10, 0.01, 0.30, 0.05, 0.40, 0.50]])
    out = reference_evaluate(dist, [1, 3, 2], [0, 0, 0], G_PIDS, G_CAMS, max_rank=3)
    # CMC: mean of q0 [0,1,1] and q2 [1,1,1] = [0.5, 1, 1]
    assert out["cmc"].tolist() == [0.5, 1.0, 1.0]
    assert out["mAP"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["mINP"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["first_match"].tolist() == [2, -1, 1]
    assert out["ap"][0] == pytest.approx(0.5)
    assert math.isnan(out["ap"][1])
    assert out["ap"][2] == pytest.approx(1.0)
    assert out["num_valid_query"] == 2


def test_every_query_skipped_raises():
    with pytest.raises(ValueError):
        reference_evaluate(DIST, [3], [0], G_PIDS, G_CAMS, protocol="market")


def test_stable_ties_resolve_by_gallery_index():
    # all distances equal: the order is the gallery index order.
    # gallery pids 5 7 7 (cams 1 1 1), query 7 camera 0 -> matches 0 1 1
    # AP = (1/2)(1/2 + 2/3) = 7/12; INP = 2/3
    out = reference_evaluate(np.zeros((1, 3)), [7], [0], [5, 7, 7], [1, 1, 1], max_rank=2)
    assert out["mAP"] == pytest.approx(7 / 12)
    assert out["mINP"] == pytest.approx(2 / 3)
    assert out["cmc"].tolist() == [0, 1]


# --------------------------------------------------------------------------- cuhk03 sampling


def test_cuhk03_with_one_image_per_identity_equals_market():
    # When every identity has one valid gallery image, sampling keeps everything. Make g5
    # junk too, so that after the removals (g0 same view, g3 and g5 junk) identity 1 has one.
    pids = np.array([1, 2, 1, -1, 3, -1])
    # remaining g1(2) g2(1) g4(3) -> matches 0 1 0: CMC [0, 1, 1], AP = 1/2, INP = 1/2
    out = reference_evaluate(DIST, [1], [0], pids, G_CAMS, protocol="cuhk03", max_rank=3)
    assert out["cmc"].tolist() == [0, 1, 1]
    assert out["mAP"] == pytest.approx(0.5)
    assert out["mINP"] == pytest.approx(0.5)


def test_cuhk03_sampling_by_hand():
    # Query identity 1, camera 0. Gallery (pid, cam, distance):
    #   g0: 2, 1, 0.30   g1: 1, 1, 0.10   g2: 2, 2, 0.20   g3: 1, 2, 0.35
    # Groups in ascending pid order: pid 1 -> [g1, g3], pid 2 -> [g0, g2]; counts [2, 2].
    # If the pid-1 pick is g1 (position 0) it is nearest of the two kept: CMC [1, 1].
    # Otherwise g3 (0.35) is farther than either pid-2 image (0.30, 0.20): CMC [0, 1].
    # So CMC@1 = fraction of repeats whose first pick is 0.
    # AP/INP use the full list g1 g2 g0 g3 -> matches 1 0 0 1: AP = (1/2)(1 + 2/4) = 0.75,
    # INP = 2/4 = 0.5.
    dist = np.array([[0.30, 0.10, 0.20, 0.35]])
    g_pids, g_cams = np.array([2, 1, 2, 1]), np.array([1, 1, 2, 2])
    for seed, repeats in [(0, 10), (3, 7), (12345, 1)]:
        rng = np.random.default_rng(seed)
        firsts = [rng.integers(0, np.array([2, 2], dtype=np.int64))[0] for _ in range(repeats)]
        expected_cmc1 = np.mean([first == 0 for first in firsts])
        out = reference_evaluate(
            dist,
            [1],
            [0],
            g_pids,
            g_cams,
            protocol="cuhk03",
            max_rank=2,
            seed=seed,
            repeats=repeats,
        )
        assert out["cmc"][0] == pytest.approx(expected_cmc1)
        assert out["cmc"][1] == 1.0
        assert out["mAP"] == pytest.approx(0.75)
        assert out["mINP"] == pytest.approx(0.5)
        assert out["first_match"].tolist() == [1]
    # with many repeats the picks are fair coins
    out = reference_evaluate(
        dist, [1], [0], g_pids, g_cams, protocol="cuhk03", max_rank=2, repeats=4000
    )
    assert out["cmc"][0] == pytest.approx(0.5, abs=0.03)


def test_single_shot_gallery_picks_within_groups_in_index_order():
    # valid gallery indices 0..5 with pids 4 9 4 9 9 4 -> groups pid 4: [0, 2, 5], pid 9: [1, 3, 4]
    g_pids = np.array([4, 9, 4, 9, 9, 4])
    rng = np.random.default_rng(7)
    picks = np.random.default_rng(7).integers(0, np.array([3, 3], dtype=np.int64))
    kept = single_shot_gallery(np.array([5, 4, 3, 2, 1, 0]), g_pids, rng)
    expected = sorted([[0, 2, 5][picks[0]], [1, 3, 4][picks[1]]])
    assert kept.tolist() == expected


def test_cuhk03_skipped_queries_draw_nothing():
    # q0 has no valid match (skipped); q1 is the sampling query above. The result for q1 must
    # be the same as when it is evaluated alone with the same seed.
    dist = np.array([[0.30, 0.10, 0.20, 0.35]] * 2)
    g_pids, g_cams = np.array([2, 1, 2, 1]), np.array([1, 1, 2, 2])
    both = reference_evaluate(dist, [8, 1], [0, 0], g_pids, g_cams, protocol="cuhk03", seed=5)
    alone = reference_evaluate(dist[1:], [1], [0], g_pids, g_cams, protocol="cuhk03", seed=5)
    np.testing.assert_array_equal(both["cmc"], alone["cmc"])


# --------------------------------------------------------------------------- re-ranking


def test_half_k_rounds_half_to_even():
    # np.around: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 10 -> 10
    assert [half_k(k) for k in (1, 2, 3, 5, 20)] == [0, 1, 2, 2, 10]


# Five points on a line: x = 0, 1, 2.5, 4.5, 10.
#   nearest orders: 0: 0 1 2 3 4   1: 1 0 2 3 4   2: 2 1 3 0 4   3: 3 2 1 0 4   4: 4 3 2 1 0
LINE = np.array([0.0, 1.0, 2.5, 4.5, 10.0])
LINE_RANK = np.argsort(np.abs(LINE[:, None] - LINE[None, :]), axis=1, kind="stable")


def test_line_ranking_is_as_worked_out():
    assert LINE_RANK.tolist() == [
        [0, 1, 2, 3, 4],
        [1, 0, 2, 3, 4],
        [2, 1, 3, 0, 4],
        [3, 2, 1, 0, 4],
        [4, 3, 2, 1, 0],
    ]


def test_k_reciprocal_neighbors_by_hand():
    # k = 1 (self + 1): 0 <-> 1 are mutual; 2's nearest is 1 but 1's is 0, so 2 keeps only itself.
    assert k_reciprocal_neighbors(LINE_RANK, 0, 1).tolist() == [0, 1]
    assert k_reciprocal_neighbors(LINE_RANK, 1, 1).tolist() == [1, 0]
    assert k_reciprocal_neighbors(LINE_RANK, 2, 1).tolist() == [2]
    assert k_reciprocal_neighbors(LINE_RANK, 4, 1).tolist() == [4]
    # k = 2 (self + 2): forward of 0 is [0, 1, 2]; 2's row [2, 1, 3] lacks 0 -> [0, 1]
    assert k_reciprocal_neighbors(LINE_RANK, 0, 2).tolist() == [0, 1]
    # forward of 2 is [2, 1, 3]; rows [1, 0, 2] and [3, 2, 1] both hold 2 -> all kept
    assert k_reciprocal_neighbors(LINE_RANK, 2, 2).tolist() == [2, 1, 3]
    # forward of 4 is [4, 3, 2]; neither 3's nor 2's row holds 4
    assert k_reciprocal_neighbors(LINE_RANK, 4, 2).tolist() == [4]


def test_expansion_by_hand():
    # k1 = 2 -> candidates use k = 1.  For 2: R = [2, 1, 3].
    #   c=2: R_c = [2] (1 shared > 2/3) -> add;  c=1: R_c = [1, 0] (1 shared, not > 4/3) -> no;
    #   c=3: R_c = [3] -> add.  R* = {1, 2, 3}  (0 is NOT pulled in).
    assert expanded_neighbors(LINE_RANK, 2, 2).tolist() == [1, 2, 3]
    # For 1: R = [1, 0, 2]; c=1: [1, 0] (2 shared > 4/3) add; c=0: [0, 1] add; c=2: [2] add.
    assert expanded_neighbors(LINE_RANK, 1, 2).tolist() == [0, 1, 2]
    assert expanded_neighbors(LINE_RANK, 4, 2).tolist() == [4]


def _blocks(q, g):
    d = lambda a, b: np.abs(a[:, None] - b[None, :]).astype(np.float32)  # noqa: E731
    return d(q, g), d(q, q), d(g, g)


def test_rerank_lambda_one_is_normalised_squared_distance():
    # lambda = 1 keeps only original_dist: squared distance over the row's largest squared one.
    # query x=0, gallery x = 1, 3, 2 (row max over all items 0,1,3,2 is 3^2 = 9)
    q_g, q_q, g_g = _blocks(np.array([0.0]), np.array([1.0, 3.0, 2.0]))
    out = reference_rerank(q_g, q_q, g_g, k1=2, k2=2, lambda_value=1.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[1 / 9, 1.0, 4 / 9]], rtol=1e-6)


def test_rerank_two_clusters_by_hand():
    # items: query x=0, gallery x = 0.1, 10, 10.1 ; k1 = 1, k2 = 1, lambda = 0.3
    # squared distances, row maxima: row 0 -> 10.1^2 = 102.01, row 1 -> 10^2 = 100.
    # k1 = 1: R(0) = R(1) = {0, 1}, R(2) = R(3) = {2, 3}; the half size is around(0.5) = 0,
    # so each candidate's set is just itself and is always added: R* = R.
    # V[0] = [1, a] / (1 + a) with a = exp(-0.01 / 102.01); V[1] = [b, 1] / (1 + b),
    # b = exp(-0.01 / 100); V[0] and V[2], V[3] have disjoint supports -> Jaccard 1.
    # overlap(0, 1) = min(1/(1+a), b/(1+b)) + min(a/(1+a), 1/(1+b)) = b/(1+b) + a/(1+a).
    a = math.exp(-0.01 / 102.01)
    b = math.exp(-0.01 / 100)
    m = b / (1 + b) + a / (1 + a)
    jac01 = 1 - m / (2 - m)
    expected = [
        [
            0.7 * jac01 + 0.3 * (0.01 / 102.01),
            0.7 * 1.0 + 0.3 * (100 / 102.01),
            0.7 * 1.0 + 0.3 * 1.0,
        ]
    ]
    q_g, q_q, g_g = _blocks(np.array([0.0]), np.array([0.1, 10.0, 10.1]))
    out = reference_rerank(q_g, q_q, g_g, k1=1, k2=1, lambda_value=0.3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_rerank_query_expansion_by_hand():
    # Same points, k2 = 2: each V row becomes the mean of its own row and its nearest's row.
    # 0's nearest is 1 and 1's nearest is 0, so V_qe[0] = V_qe[1] = (V[0] + V[1]) / 2:
    # overlap 1 -> Jaccard 0.  The far pair is still disjoint -> Jaccard 1.
    q_g, q_q, g_g = _blocks(np.array([0.0]), np.array([0.1, 10.0, 10.1]))
    out = reference_rerank(q_g, q_q, g_g, k1=1, k2=2, lambda_value=0.3)
    expected = [[0.3 * (0.01 / 102.01), 0.7 + 0.3 * (100 / 102.01), 1.0]]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_rerank_lambda_zero_is_a_jaccard_distance():
    # A sanity property rather than a hand value: with lambda = 0 every entry is a Jaccard
    # distance, in [0, 1].
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=4), rng.normal(size=9)
    out = reference_rerank(*_blocks(q, g), k1=3, k2=2, lambda_value=0.0)
    assert out.shape == (4, 9)
    assert np.all(out >= -1e-6) and np.all(out <= 1 + 1e-6)
