"""Sparse Jaccard distances among one set (reidkit.metrics.jaccard) against the dense
reference in reference.py, and scikit-learn's DBSCAN on them sparse and dense."""

from __future__ import annotations

import numpy as np
import pytest
from reference import reference_jaccard_among

from reidkit.errors import UsageError
from reidkit.metrics.distance import pairwise_distance
from reidkit.metrics.jaccard import jaccard_among


def clustered(seed, ids=12, per_id=8, dim=16, noise=0.6):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    labels = np.repeat(np.arange(ids), per_id)
    return (centres[labels] + noise * rng.normal(size=(len(labels), dim))).astype(np.float32)


def dense(sparse) -> np.ndarray:
    """The sparse matrix as the dense one it stands for: 1.0 where nothing is stored."""
    out = np.ones(sparse.shape)
    coo = sparse.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


@pytest.mark.parametrize(
    "seed, variant, k1, k2",
    [(0, "cluster-contrast", 30, 6), (1, "cluster-contrast", 8, 3), (2, "zhong", 20, 6),
     (3, "zhong", 6, 1), (4, "cluster-contrast", 12, 1)],
)  # fmt: skip
def test_the_sparse_distances_are_the_dense_references(seed, variant, k1, k2):
    feats = clustered(seed)
    got = jaccard_among(feats, k1=k1, k2=k2, variant=variant)
    distances = pairwise_distance(feats, feats, "euclidean", normalize=True)
    expected = reference_jaccard_among(distances, k1=k1, k2=k2, variant=variant)
    assert got.shape == (96, 96)
    np.testing.assert_allclose(dense(got), expected, rtol=0, atol=1e-5)
    # exactly the pairs below 1 are stored, the diagonal's zeros with them
    stored = np.zeros(got.shape, dtype=bool)
    coo = got.tocoo()
    stored[coo.row, coo.col] = True
    assert np.array_equal(stored, expected < 1.0)
    assert (coo.data < 1.0).all() and np.array_equal(got.diagonal(), np.zeros(96))


@pytest.mark.parametrize("variant", ["cluster-contrast", "zhong"])
@pytest.mark.parametrize("n, k1, k2", [(2, 2, 1), (5, 5, 1), (10, 30, 6), (20, 20, 1)])
def test_k1_as_large_as_the_set_is_the_reference(variant, n, k1, k2):
    """Neighbourhoods as large as the set: Cluster Contrast's k1 nearest may be all n items,
    Zhong et al.'s k1 + 1 nearest as well."""
    feats = clustered(9, ids=4, per_id=5)[:n]
    got = jaccard_among(feats, k1=k1, k2=k2, variant=variant)
    distances = pairwise_distance(feats, feats, "euclidean", normalize=True)
    expected = reference_jaccard_among(
        distances, k1=min(k1, n - 1 if variant == "zhong" else n), k2=k2, variant=variant
    )
    np.testing.assert_allclose(dense(got), expected, rtol=0, atol=1e-5)


def test_the_variants_differ_as_their_papers_do():
    """Cluster Contrast's encoding (k1 nearest, softmax of -d^2) is not Zhong et al.'s
    (k1 + 1 nearest, weights over the row's largest distance) on the same features."""
    feats = clustered(5)
    a = dense(jaccard_among(feats, k1=10, variant="cluster-contrast"))
    b = dense(jaccard_among(feats, k1=10, variant="zhong"))
    assert np.abs(a - b).max() > 1e-2


@pytest.mark.parametrize("eps", [0.3, 0.5, 0.6, 0.8])
def test_dbscan_on_the_sparse_matrix_finds_the_dense_matrixs_clusters(eps):
    from sklearn.cluster import DBSCAN

    feats = clustered(6, ids=50, per_id=8, dim=32, noise=0.6)
    sparse = jaccard_among(feats, k1=12, k2=6)
    assert sparse.nnz < 0.5 * 400 * 400  # most pairs share no neighbour: not stored
    on_sparse = DBSCAN(eps=eps, min_samples=4, metric="precomputed").fit_predict(sparse)
    on_dense = DBSCAN(eps=eps, min_samples=4, metric="precomputed").fit_predict(dense(sparse))
    assert np.array_equal(on_sparse, on_dense)
    assert len(set(on_dense) - {-1}) >= 2  # a real clustering, not one blob or all noise


def test_pairs_under_a_bound_are_the_matrixs_pairs_under_it():
    """``below``: the same values, only the pairs under it; DBSCAN with a radius under it
    finds the same clusters as on the whole matrix."""
    from sklearn.cluster import DBSCAN

    feats = clustered(8, ids=50, per_id=8, dim=32, noise=0.6)
    whole = jaccard_among(feats, k1=12, k2=6)
    bounded = jaccard_among(feats, k1=12, k2=6, below=0.61)
    expected = dense(whole)
    expected[expected >= 0.61] = 1.0
    assert np.array_equal(dense(bounded), expected) and bounded.nnz < whole.nnz
    assert (bounded.data < 0.61).all() and np.array_equal(bounded.diagonal(), np.zeros(400))
    dbscan = DBSCAN(eps=0.6, min_samples=4, metric="precomputed")
    assert np.array_equal(dbscan.fit_predict(bounded), dbscan.fit_predict(whole))


def test_bad_options_are_usage_errors():
    feats = clustered(7)
    with pytest.raises(UsageError, match="unknown Jaccard variant 'spcl'"):
        jaccard_among(feats, variant="spcl")
    with pytest.raises(UsageError, match="k1 must be at least 2"):
        jaccard_among(feats, k1=1)
    with pytest.raises(UsageError, match=r"below must be in \(0, 1\], got 1.5"):
        jaccard_among(feats, below=1.5)
    with pytest.raises(UsageError, match="at least 2 items, got 1"):
        jaccard_among(feats[:1])
