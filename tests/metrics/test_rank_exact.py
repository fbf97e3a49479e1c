"""The fast ranking metrics agree with the plain reference in reference.py, case by case.

Distances come from ``pairwise_distance`` on random float32 features, so there are no ties
(ties get their own test). Every comparison is to 1e-6 absolute.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_evaluate

from reidkit.errors import DataError
from reidkit.metrics import match_ranks
from reidkit.metrics.distance import pairwise_distance
from reidkit.metrics.rank import evaluate_distances

ATOL = 1e-6
PROTOCOLS = ("market", "cuhk03", "none")
METRICS = ("euclidean", "sqeuclidean", "cosine")
DEFAULT_RANKS = (1, 5, 10, 20)

# examples, seed and database come from the hypothesis profile (tests/conftest.py); the
# method fixture below is meant to hold for all examples of a test
SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True, params=["candidates", "histogram", "histogram-4-cells"])
def method(request, monkeypatch):
    """Every case runs through each way of finding the ranks of the matches
    (reidkit.metrics.match_ranks): sorting the candidates, and the per-row histogram, also
    with 4 cells a row so that nearly every item goes through its exact comparison."""
    if request.param == "candidates":
        monkeypatch.setattr(match_ranks, "SORT_FRACTION", 2.0)
    else:
        monkeypatch.setattr(match_ranks, "SORT_FRACTION", -1.0)
    if request.param == "histogram-4-cells":
        monkeypatch.setattr(match_ranks, "LEVELS", 4)
    return request.param


# --------------------------------------------------------------------------- case building


def make_case(
    seed,
    *,
    num_q,
    num_g,
    num_ids,
    num_cams,
    junk=0.0,
    distractors=0.0,
    dim=16,
    metric="euclidean",
    spread=1.0,
):
    """Random identities, cameras and features; returns (distmat, q_pids, q_cams, g_pids, g_cams).

    Identities are 1..num_ids; a fraction ``junk`` of the gallery gets pid -1 and a fraction
    ``distractors`` pid 0 (never a query identity). Features are an identity centre plus
    noise of scale ``spread``, so rankings are neither trivial nor random.
    """
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, num_ids + 1, size=num_q)
    q_cams = rng.integers(0, num_cams, size=num_q)
    g_pids = rng.integers(1, num_ids + 1, size=num_g)
    g_cams = rng.integers(0, num_cams, size=num_g)
    kind = rng.random(num_g)
    g_pids[kind < junk] = -1
    g_pids[(kind >= junk) & (kind < junk + distractors)] = 0
    centres = rng.normal(size=(num_ids + 2, dim))  # row pid + 1: -1 -> 0, 0 -> 1, p -> p + 1
    qf = (centres[q_pids + 1] + spread * rng.normal(size=(num_q, dim))).astype(np.float32)
    gf = (centres[g_pids + 1] + spread * rng.normal(size=(num_g, dim))).astype(np.float32)
    # junk images are each their own thing, not one shared identity
    junk_rows = g_pids == -1
    gf[junk_rows] = rng.normal(size=(int(junk_rows.sum()), dim)).astype(np.float32)
    distmat = pairwise_distance(qf, gf, metric)
    return distmat, q_pids, q_cams, g_pids, g_cams


def compare(distmat, q_pids, q_cams, g_pids, g_cams, *, protocol, ranks, seed=0, repeats=10):
    """Run both implementations and assert they agree; returns the reference result (or None
    when every query is skipped, after checking that the fast code raises DataError)."""
    try:
        ref = reference_evaluate(
            distmat, q_pids, q_cams, g_pids, g_cams,
            protocol=protocol, max_rank=max(50, *ranks), seed=seed, repeats=repeats,
        )  # fmt: skip
    except ValueError:
        with pytest.raises(DataError):
            evaluate_distances(
                distmat, q_pids, q_cams, g_pids, g_cams,
                protocol=protocol, ranks=ranks, seed=seed, repeats=repeats,
            )  # fmt: skip
        return None
    res = evaluate_distances(
        distmat, q_pids, q_cams, g_pids, g_cams,
        protocol=protocol, ranks=ranks, seed=seed, repeats=repeats,
    )  # fmt: skip
    num_q = len(q_pids)
    assert sorted(res.cmc) == sorted(ranks)
    for r in ranks:
        assert abs(res.cmc[r] - ref["cmc"][r - 1]) <= ATOL, (r, res.cmc[r], ref["cmc"][r - 1])
    # the whole curve, ranks 1..max(50, largest rank), for plots
    np.testing.assert_allclose(res.cmc_curve, ref["cmc"], rtol=0, atol=ATOL)
    assert abs(res.mAP - ref["mAP"]) <= ATOL, (res.mAP, ref["mAP"])
    assert abs(res.mINP - ref["mINP"]) <= ATOL, (res.mINP, ref["mINP"])
    ap = np.asarray(res.ap)
    assert ap.shape == (num_q,)
    np.testing.assert_array_equal(np.isnan(ap), np.isnan(ref["ap"]))
    np.testing.assert_allclose(ap, ref["ap"], rtol=0, atol=ATOL, equal_nan=True)
    first = np.asarray(res.first_match)
    assert first.dtype == np.int64
    np.testing.assert_array_equal(first, ref["first_match"])
    assert res.num_query == num_q
    assert res.num_valid_query == ref["num_valid_query"]
    assert res.skipped == num_q - ref["num_valid_query"]
    return ref


ranks_strategy = st.one_of(
    st.just(DEFAULT_RANKS),
    st.lists(st.integers(1, 60), min_size=1, max_size=5, unique=True).map(
        lambda r: tuple(sorted(r))
    ),
)


# --------------------------------------------------------------------------- random cases


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    num_q=st.integers(1, 25),
    num_g=st.integers(1, 80),
    num_ids=st.integers(1, 15),
    num_cams=st.integers(1, 4),
    junk=st.sampled_from([0.0, 0.1, 0.3]),
    distractors=st.sampled_from([0.0, 0.1, 0.3]),
    metric=st.sampled_from(METRICS),
    protocol=st.sampled_from(PROTOCOLS),
    ranks=ranks_strategy,
)
def test_random_cases_match_reference(
    seed, num_q, num_g, num_ids, num_cams, junk, distractors, metric, protocol, ranks
):
    case = make_case(
        seed, num_q=num_q, num_g=num_g, num_ids=num_ids, num_cams=num_cams,
        junk=junk, distractors=distractors, metric=metric,
    )  # fmt: skip
    compare(*case, protocol=protocol, ranks=ranks)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    eval_seed=st.integers(0, 2**32 - 1),
    repeats=st.integers(1, 12),
    num_q=st.integers(1, 20),
    num_g=st.integers(2, 60),
    num_ids=st.integers(1, 8),
    num_cams=st.integers(1, 3),
    junk=st.sampled_from([0.0, 0.2]),
    ranks=ranks_strategy,
)
def test_cuhk03_sampling_matches_reference(
    seed, eval_seed, repeats, num_q, num_g, num_ids, num_cams, junk, ranks
):
    # few identities and many gallery images: groups of several images, so sampling matters
    case = make_case(
        seed, num_q=num_q, num_g=num_g, num_ids=num_ids, num_cams=num_cams, junk=junk,
        distractors=0.1,
    )  # fmt: skip
    compare(*case, protocol="cuhk03", ranks=ranks, seed=eval_seed, repeats=repeats)


# --------------------------------------------------------------------------- targeted scenarios


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_junk_and_distractors(seed, protocol):
    case = make_case(seed, num_q=15, num_g=60, num_ids=6, num_cams=3, junk=0.25, distractors=0.25)
    _, _, _, g_pids, _ = case
    assert (g_pids == -1).any() and (g_pids == 0).any()
    compare(*case, protocol=protocol, ranks=DEFAULT_RANKS)


@pytest.mark.parametrize("seed", range(6))
def test_single_camera_under_protocol_none(seed):
    case = make_case(seed, num_q=12, num_g=40, num_ids=5, num_cams=1, junk=0.1)
    ref = compare(*case, protocol="none", ranks=(1, 3, 5, 10))
    assert ref is not None and ref["num_valid_query"] > 0
    # under the camera rules the same data has no valid query at all
    compare(*case, protocol="market", ranks=(1, 3, 5, 10))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_skipped_queries_mixed_with_valid_ones(seed, protocol):
    # 20 identities, 12 gallery images: many query identities are absent from the gallery,
    # or (market/cuhk03) present only in the query's own camera.
    case = make_case(seed, num_q=20, num_g=12, num_ids=20, num_cams=2, junk=0.1)
    ref = compare(*case, protocol=protocol, ranks=DEFAULT_RANKS)
    if ref is not None:
        assert 0 < ref["num_valid_query"] < 20


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_several_images_per_identity_and_camera(seed, protocol):
    case = make_case(seed, num_q=10, num_g=70, num_ids=3, num_cams=2, spread=2.0)
    _, _, _, g_pids, g_cams = case
    _, per_view = np.unique(np.stack([g_pids, g_cams]), axis=1, return_counts=True)
    assert per_view.max() > 3
    compare(*case, protocol=protocol, ranks=DEFAULT_RANKS)


@pytest.mark.parametrize("num_g", [1, 2, 3, 7])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_gallery_shorter_than_largest_rank(num_g, protocol):
    for seed in range(5):
        case = make_case(seed, num_q=6, num_g=num_g, num_ids=2, num_cams=2, junk=0.2)
        compare(*case, protocol=protocol, ranks=(1, 5, 10, 20, 50))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_default_ranks_and_seed(protocol):
    # evaluate_distances with no ranks/seed/repeats equals the reference's defaults
    distmat, q_pids, q_cams, g_pids, g_cams = make_case(
        11, num_q=15, num_g=50, num_ids=5, num_cams=3, junk=0.1, distractors=0.1
    )
    ref = reference_evaluate(distmat, q_pids, q_cams, g_pids, g_cams, protocol=protocol)
    res = evaluate_distances(distmat, q_pids, q_cams, g_pids, g_cams, protocol=protocol)
    assert sorted(res.cmc) == list(DEFAULT_RANKS)
    for r in DEFAULT_RANKS:
        assert abs(res.cmc[r] - ref["cmc"][r - 1]) <= ATOL
    assert abs(res.mAP - ref["mAP"]) <= ATOL
    assert abs(res.mINP - ref["mINP"]) <= ATOL


def test_market_default_protocol():
    distmat, q_pids, q_cams, g_pids, g_cams = make_case(
        4, num_q=10, num_g=30, num_ids=4, num_cams=2
    )
    ref = reference_evaluate(distmat, q_pids, q_cams, g_pids, g_cams, max_rank=20)
    res = evaluate_distances(distmat, q_pids, q_cams, g_pids, g_cams)
    assert abs(res.mAP - ref["mAP"]) <= ATOL
    assert abs(res.cmc[1] - ref["cmc"][0]) <= ATOL


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("seed", range(4))
def test_ties_break_by_gallery_index(protocol, seed):
    # distances on a coarse integer grid: many exact ties, which the specification breaks by
    # ascending gallery index (a stable sort)
    rng = np.random.default_rng(seed)
    num_q, num_g = 8, 40
    distmat = rng.integers(0, 4, size=(num_q, num_g)).astype(np.float32)
    q_pids = rng.integers(1, 5, size=num_q)
    q_cams = rng.integers(0, 2, size=num_q)
    g_pids = rng.integers(-1, 5, size=num_g)
    g_cams = rng.integers(0, 2, size=num_g)
    compare(distmat, q_pids, q_cams, g_pids, g_cams, protocol=protocol, ranks=(1, 2, 5, 10, 50))


# --------------------------------------------------------------------------- every query skipped


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_query_skipped_raises_data_error(protocol):
    # query identities 1 and 2 never appear in the gallery (only 3, distractors and junk)
    distmat = np.arange(8, dtype=np.float32).reshape(2, 4)
    q_pids, q_cams = np.array([1, 2]), np.array([0, 1])
    g_pids, g_cams = np.array([3, 0, -1, 3]), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError):
        reference_evaluate(distmat, q_pids, q_cams, g_pids, g_cams, protocol=protocol)
    with pytest.raises(DataError):
        evaluate_distances(distmat, q_pids, q_cams, g_pids, g_cams, protocol=protocol)


@pytest.mark.parametrize("protocol", ["market", "cuhk03"])
def test_only_same_camera_matches_raises_data_error(protocol):
    # every true match is in the query's own camera -> removed -> nothing left to find
    distmat = np.array([[0.1, 0.2, 0.3]], dtype=np.float32)
    q_pids, q_cams = np.array([5]), np.array([2])
    g_pids, g_cams = np.array([5, 5, 6]), np.array([2, 2, 1])
    with pytest.raises(DataError):
        evaluate_distances(distmat, q_pids, q_cams, g_pids, g_cams, protocol=protocol)
    # without the camera rule the same query counts
    res = evaluate_distances(distmat, q_pids, q_cams, g_pids, g_cams, protocol="none")
    assert res.num_valid_query == 1 and res.mAP == pytest.approx(1.0)


def test_only_junk_matches_raises_data_error():
    # a query with identity -1: junk is removed under every protocol, so it never matches
    distmat = np.array([[0.1, 0.2]], dtype=np.float32)
    with pytest.raises(DataError):
        evaluate_distances(distmat, [-1], [0], [-1, -1], [1, 1], protocol="none")


# Random float32 features whose distances happen to tie exactly (between a true match and a
# non-match) once galleries exceed ~100 images; found by a long random search. Real galleries
# (tens of thousands of images) hold many such ties.
NATURAL_TIES = [
    (1130350311, dict(num_q=31, num_g=114, num_ids=3, num_cams=4, junk=0.1, distractors=0.3,
                      metric="euclidean", spread=3.0), "none"),
    (3618981236, dict(num_q=17, num_g=101, num_ids=5, num_cams=4, junk=0.0, distractors=0.3,
                      metric="euclidean", spread=3.0), "market"),
    (115003848, dict(num_q=27, num_g=110, num_ids=6, num_cams=3, junk=0.1, distractors=0.0,
                     metric="cosine", spread=3.0), "market"),
]  # fmt: skip


@pytest.mark.parametrize(("seed", "params", "protocol"), NATURAL_TIES)
def test_natural_float32_ties(seed, params, protocol):
    case = make_case(seed, **params)
    distmat = case[0]
    if all(len(np.unique(row)) == len(row) for row in distmat):
        pytest.skip("this BLAS produced no exact tie for this case")
    compare(*case, protocol=protocol, ranks=(1, 5, 10, 20, 50))
