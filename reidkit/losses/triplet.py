"""Triplet losses over a batch: for each anchor one positive and one negative distance,
with a hinge margin or the soft margin log(1 + exp(d_ap - d_an)).

- "hard" mining (Hermans et al., "In Defense of the Triplet Loss for Person
  Re-Identification", 2017): the farthest positive and the nearest negative;
- "weighted" mining, AGW's weighted regularised triplet (Ye et al., TPAMI 2021, as its code
  and fast-reid's compute it): the positives' distances averaged with softmax weights of
  the distances (the far ones count most; the anchor itself is among its positives, as
  there), the negatives' with softmax weights of the negated distances (the near ones
  count most). AGW uses it with the soft margin.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


def euclidean(x: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances of the rows of ``x``, from differences.

    ``torch.cdist``'s default takes the ``|a|^2 + |b|^2 - 2ab`` shortcut above 25 rows,
    which loses the digits of a small distance between long vectors (measured: 1.3% off at
    distance 0.045 between vectors of norm 31) and divides the gradient by that error.
    """
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").clamp_min(1e-12)


class Pairs(NamedTuple):
    """Each anchor's farthest positive (``d_ap``) and nearest negative (``d_an``) distance,
    and whether it has both (``valid``); an anchor without them does not count."""

    d_ap: torch.Tensor
    d_an: torch.Tensor
    valid: torch.Tensor

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` (one per anchor) over the valid anchors; 0 without any.
        Masks instead of selecting, so that no step waits for the GPU to say how many."""
        kept = torch.where(self.valid, values, torch.zeros_like(values))
        return kept.sum() / self.valid.sum().clamp_min(1)


def hardest_pairs(features: torch.Tensor, labels: torch.Tensor) -> Pairs:
    """Every anchor's hardest pair of distances, in float32 whatever the autocast."""
    dist = euclidean(features.float())
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same & ~eye
    valid = positive.any(1) & (~same).any(1)
    hardest_positive = torch.where(positive, dist, torch.zeros_like(dist)).max(1).values
    hardest_negative = torch.where(same, torch.full_like(dist, float("inf")), dist).min(1).values
    return Pairs(hardest_positive, hardest_negative, valid)


def _softmax_weights(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax weights of ``values`` over the row's ``mask`` (float 0/1), computed as AGW
    and fast-reid compute them, so that their losses come out to the digit: shifted by the
    row's largest masked value (a masked-out entry counts as 0 there) and with 1e-6 added
    to the normaliser (with the negatives' negated distances that shift is 0, and the
    1e-6 changes the loss in its fourth digit)."""
    shifted = (values - (values * mask).max(1, keepdim=True).values).exp() * mask
    return shifted / (shifted.sum(1, keepdim=True) + 1e-6)


def weighted_pairs(features: torch.Tensor, labels: torch.Tensor) -> Pairs:
    """Every anchor's softmax-weighted positive and negative distance (see the module's
    text), in float32 whatever the autocast; the anchors that count as in
    :func:`hardest_pairs`."""
    dist = euclidean(features.float())
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    valid = (same & ~eye).any(1) & (~same).any(1)
    positive, negative = same.float(), (~same).float()
    d_ap = (dist * positive * _softmax_weights(dist * positive, positive)).sum(1)
    d_an = (dist * negative * _softmax_weights(-dist * negative, negative)).sum(1)
    return Pairs(d_ap, d_an, valid)


MINING = {"hard": hardest_pairs, "weighted": weighted_pairs}


def triplet_from_pairs(pairs: Pairs, margin: float = 0.3, soft_margin: bool = False):
    """The mean loss of the pairs' valid anchors (0, with the features' graph, without
    any)."""
    gap = pairs.d_ap - pairs.d_an
    return pairs.mean(F.softplus(gap) if soft_margin else F.relu(gap + margin))


def batch_hard_triplet(
    features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, soft_margin: bool = False
) -> torch.Tensor:
    """Mean batch-hard triplet loss over anchors that have a positive and a negative."""
    return triplet_from_pairs(hardest_pairs(features, labels), margin, soft_margin)
