"""Pseudo-labels (reidkit.engine.pseudo_labels): DBSCAN on the Jaccard pairs under eps
against DBSCAN on every Jaccard distance as a dense matrix (the distances themselves are
checked against the dense reference in tests/metrics/test_jaccard.py), and their
agreement with true identities against hand counts."""

from __future__ import annotations

import numpy as np
import pytest

from reidkit.engine.pseudo_labels import Clustering, agreement, pseudo_labels
from reidkit.errors import UsageError
from reidkit.metrics.jaccard import jaccard_among


def clustered(seed, ids=10, per_id=8, dim=16, noise=0.7, loners=3):
    """Identities as noisy copies of a centre each, and a few items far from all."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    truth = np.repeat(np.arange(ids), per_id)
    x = centres[truth] + noise * rng.normal(size=(len(truth), dim))
    far = 6 * rng.normal(size=(loners, dim))
    return np.concatenate([x, far]).astype(np.float32), np.concatenate(
        [truth, ids + np.arange(loners)]
    )


@pytest.mark.parametrize(("seed", "eps", "k1"), [(0, 0.6, 8), (1, 0.5, 12), (2, 0.4, 6)])
def test_labels_are_dbscan_on_every_jaccard_distance(seed, eps, k1):
    from sklearn.cluster import DBSCAN

    x, _ = clustered(seed)
    every = jaccard_among(x, k1=k1, k2=6).tocoo()
    dense = np.ones(every.shape)
    dense[every.row, every.col] = every.data
    expected = DBSCAN(eps=eps, min_samples=4, metric="precomputed").fit_predict(dense)
    labels = pseudo_labels(x, Clustering(eps=eps, k1=k1))
    # the same partition
    assert labels.dtype == np.int64 and labels.max() >= 8 and (labels < 0).any()
    assert np.array_equal(labels < 0, expected < 0)
    pairs = labels[:, None] == labels[None]
    assert np.array_equal(pairs[labels >= 0], (expected[:, None] == expected[None])[labels >= 0])


def test_separated_identities_are_found():
    # k1 under the images per identity: neighbourhoods stay within identities
    x, truth = clustered(3, per_id=12, noise=0.2, loners=0)
    labels = pseudo_labels(x, Clustering(eps=0.6, k1=10))
    assert agreement(labels, truth) == {
        "clusters": 10,
        "outliers": 0,
        "nmi": 1.0,
        "ari": 1.0,
        "pair_precision": 1.0,
        "pair_recall": 1.0,
    }


def test_agreement_counts_pairs_and_outliers_as_their_own_clusters():
    # clusters {0, 1} and {2, 3}, item 4 an outlier; identities {0, 1, 2} and {3, 4}.
    # pairs in one cluster: (0,1) right, (2,3) wrong: precision 1/2; pairs of one
    # identity: (0,1) (0,2) (1,2) (3,4), one of them clustered together: recall 1/4
    got = agreement(np.array([0, 0, 1, 1, -1]), np.array([5, 5, 5, 6, 6]))
    assert got["clusters"] == 2 and got["outliers"] == 1
    assert got["pair_precision"] == 0.5 and got["pair_recall"] == 0.25
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    own = [0, 0, 1, 1, 2]  # the outlier a cluster of its own
    assert got["ari"] == pytest.approx(adjusted_rand_score([5, 5, 5, 6, 6], own))
    assert got["nmi"] == pytest.approx(normalized_mutual_info_score([5, 5, 5, 6, 6], own))


def test_nothing_clustered_agrees_with_nothing():
    got = agreement(np.array([-1, -1, -1]), np.array([1, 1, 2]))
    assert got["clusters"] == 0 and got["outliers"] == 3
    assert got["pair_precision"] == 0.0 and got["pair_recall"] == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eps": 1.0}, "adapt.eps must be between 0 and 1 (exclusive), got 1.0"),
        ({"eps": 0.0}, "adapt.eps must be between 0 and 1 (exclusive), got 0.0"),
        ({"min_samples": 0}, "adapt.min_samples must be at least 1, got 0"),
        ({"variant": "mmt"}, "adapt.variant: unknown value 'mmt'"),
    ],
)
def test_settings_that_cannot_cluster_are_refused(options, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Clustering(**options)


def test_camera_centred_features_cluster_people_across_cameras():
    """Images that share a camera share a strong offset (its light, its background): on
    plain features DBSCAN mixes people of one camera; less their camera's mean, it finds
    the people."""
    from reidkit.engine.pseudo_labels import camera_centred

    rng = np.random.default_rng(0)
    people, cameras, shots, dim = 6, 3, 4, 32
    person = np.repeat(np.arange(people), cameras * shots)
    camera = np.tile(np.repeat(np.arange(cameras), shots), people)
    x = (
        rng.normal(size=(people, dim))[person]
        + 4 * rng.normal(size=(cameras, dim))[camera]
        + 0.2 * rng.normal(size=(len(person), dim))
    ).astype(np.float32)
    clustering = Clustering(eps=0.5, k1=10)
    assert agreement(pseudo_labels(x, clustering), person)["ari"] < 0.5
    centred = camera_centred(x, camera)
    np.testing.assert_allclose(np.linalg.norm(centred, axis=1), 1.0, rtol=1e-5)
    assert agreement(pseudo_labels(centred, clustering), person)["ari"] == 1.0  # people
