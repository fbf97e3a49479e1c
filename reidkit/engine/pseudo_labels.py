"""Pseudo-labels for adaptation to unlabelled cameras: DBSCAN on the k-reciprocal Jaccard
distances among a set's L2-normalised features (Cluster Contrast, SpCL), and how far those
labels agree with true identities where the set has them.

    labels = pseudo_labels(features, Clustering(eps=0.6))   # -1: an outlier
    agreement(labels, true_pids)   # clusters, outliers, NMI, ARI, pairwise P/R

The distances are :func:`reidkit.metrics.jaccard.jaccard_among`'s sparse matrix holding only
the pairs DBSCAN can use (at most eps), so memory grows with the neighbourhoods, not N^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reidkit.errors import UsageError
from reidkit.metrics.rerank import VARIANTS
from reidkit.progress import ProgressFn, no_progress


@dataclass(frozen=True)
class Clustering:
    """How pseudo-labels are made (Cluster Contrast's settings by default).

    Args:
        eps: DBSCAN's radius on Jaccard distances (0 to 1): items closer than this are
            neighbours. Smaller: purer, smaller clusters and more outliers.
        min_samples: neighbours (the item included) that make an item a cluster's core.
        k1, k2: the k-reciprocal neighbourhood and the query expansion of the Jaccard
            distances.
        variant: the neighbourhood encoding, one of reidkit.metrics.rerank.VARIANTS.
    """

    eps: float = 0.6
    min_samples: int = 4
    k1: int = 30
    k2: int = 6
    variant: str = "cluster-contrast"

    def __post_init__(self) -> None:
        if not 0.0 < self.eps < 1.0:
            raise UsageError(f"adapt.eps must be between 0 and 1 (exclusive), got {self.eps}")
        if self.min_samples < 1:
            raise UsageError(f"adapt.min_samples must be at least 1, got {self.min_samples}")
        if self.variant not in VARIANTS:
            raise UsageError(
                f"adapt.variant: unknown value {self.variant!r}",
                hint=f"one of: {', '.join(VARIANTS)}",
            )


def pseudo_labels(
    features: np.ndarray,
    clustering: Clustering = Clustering(),
    *,
    device: str = "cpu",
    progress: ProgressFn = no_progress,
) -> np.ndarray:
    """(N,) int64 cluster labels 0..K-1 of the rows of ``features``, -1 for outliers."""
    from sklearn.cluster import DBSCAN

    from reidkit.metrics.jaccard import jaccard_among

    c = clustering
    # every pair DBSCAN counts as neighbours (distance <= eps) and nothing farther
    below = float(np.nextafter(np.float32(c.eps), np.float32(2)))
    distances = jaccard_among(
        features, k1=c.k1, k2=c.k2, variant=c.variant, below=below, device=device,
        progress=progress,
    )  # fmt: skip
    dbscan = DBSCAN(eps=c.eps, min_samples=c.min_samples, metric="precomputed")
    return dbscan.fit_predict(distances).astype(np.int64)


def camera_centred(features: np.ndarray, cameras: np.ndarray) -> np.ndarray:
    """L2-normalised features less the mean of their camera's, normalised again: what
    every image of a camera shares (its light, background, colour cast) leaves the
    distances, so clusters form across cameras rather than within them."""
    from reidkit.metrics.distance import l2_normalize

    out = l2_normalize(features)
    for camera in np.unique(cameras):
        rows = cameras == camera
        out[rows] -= out[rows].mean(axis=0)
    return l2_normalize(out)


def agreement(labels: np.ndarray, truth: np.ndarray) -> dict[str, float | int]:
    """How pseudo-labels agree with true identities: the number of clusters and outliers;
    NMI and ARI; and pairwise precision (of the pairs put in one cluster, the share that
    are one identity) and recall (of the pairs of one identity, the share put in one
    cluster). Every outlier counts as a cluster of its own, so leaving an item out costs
    recall."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.metrics.cluster import pair_confusion_matrix

    labels, truth = np.asarray(labels), np.asarray(truth)
    outliers = labels < 0
    singletons = labels.copy()
    singletons[outliers] = labels.max(initial=-1) + 1 + np.arange(int(outliers.sum()))
    pairs = pair_confusion_matrix(truth, singletons)  # [[-, fp], [fn, tp]], ordered pairs
    tp, fp, fn = int(pairs[1, 1]), int(pairs[0, 1]), int(pairs[1, 0])
    return {
        "clusters": int(labels.max(initial=-1) + 1),
        "outliers": int(outliers.sum()),
        "nmi": float(normalized_mutual_info_score(truth, singletons)),
        "ari": float(adjusted_rand_score(truth, singletons)),
        "pair_precision": tp / (tp + fp) if tp + fp else 0.0,
        "pair_recall": tp / (tp + fn) if tp + fn else 0.0,
    }
