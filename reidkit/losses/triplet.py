"""Batch-hard triplet loss (Hermans et al., "In Defense of the Triplet Loss for Person
Re-Identification", 2017): for each anchor, its farthest positive and nearest negative in
the batch, with a hinge margin or the soft margin log(1 + exp(d_ap - d_an))."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def euclidean(x: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances of the rows of ``x``, from differences.

    ``torch.cdist``'s default takes the ``|a|^2 + |b|^2 - 2ab`` shortcut above 25 rows,
    which loses the digits of a small distance between long vectors (measured: 1.3% off at
    distance 0.045 between vectors of norm 31) and divides the gradient by that error.
    """
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").clamp_min(1e-12)


def hardest_pairs(
    features: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(d_ap, d_an)``: each anchor's farthest positive and nearest negative distance, for
    the anchors that have both (None when none has), in float32 whatever the autocast."""
    dist = euclidean(features.float())
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same & ~eye
    valid = positive.any(1) & (~same).any(1)
    if not valid.any():
        return None
    hardest_positive = torch.where(positive, dist, torch.zeros_like(dist)).max(1).values
    hardest_negative = torch.where(same, torch.full_like(dist, float("inf")), dist).min(1).values
    return hardest_positive[valid], hardest_negative[valid]


def triplet_from_pairs(
    d_ap: torch.Tensor, d_an: torch.Tensor, margin: float = 0.3, soft_margin: bool = False
) -> torch.Tensor:
    """The mean loss of :func:`hardest_pairs`' distances."""
    if soft_margin:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(d_ap - d_an + margin).mean()


def batch_hard_triplet(
    features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, soft_margin: bool = False
) -> torch.Tensor:
    """Mean batch-hard triplet loss over anchors that have a positive and a negative."""
    pairs = hardest_pairs(features, labels)
    if pairs is None:
        return features.sum() * 0.0  # keeps the graph; no triplet in this batch
    return triplet_from_pairs(*pairs, margin, soft_margin)
