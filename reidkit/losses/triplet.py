"""Batch-hard triplet loss (Hermans et al., "In Defense of the Triplet Loss for Person
Re-Identification", 2017): for each anchor, its farthest positive and nearest negative in
the batch, with a hinge margin or the soft margin log(1 + exp(d_ap - d_an))."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def batch_hard_triplet(
    features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, soft_margin: bool = False
) -> torch.Tensor:
    """Mean batch-hard triplet loss over anchors that have a positive and a negative.

    Distances are Euclidean, computed in float32 whatever the autocast dtype.
    """
    x = features.float()
    dist = torch.cdist(x, x).clamp_min(1e-12)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same & ~eye
    valid = positive.any(1) & (~same).any(1)
    if not valid.any():
        return features.sum() * 0.0  # keeps the graph; no triplet in this batch
    hardest_positive = torch.where(positive, dist, torch.zeros_like(dist)).max(1).values
    hardest_negative = torch.where(same, torch.full_like(dist, float("inf")), dist).min(1).values
    gap = (hardest_positive - hardest_negative)[valid]
    if soft_margin:
        return F.softplus(gap).mean()
    return F.relu(gap + margin).mean()
