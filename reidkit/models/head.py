"""The re-ID head of the ResNets and timm trunks: an optional BNNeck and a classifier.

"Bag of Tricks and A Strong Baseline for Deep Person Re-identification" (Luo et al., CVPRW
2019): a batch-norm layer between the pooled feature and a bias-free classifier, its shift
frozen; the triplet loss sees the feature before it, the classifier and the ranking the
feature after it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidkit.errors import UsageError

CLASSIFIERS = ("linear", "cosine")
# the feature the metric losses see: before the BNNeck (BoT) or after it (fast-reid's SBS)
NECK_FEATS = ("before", "after")


class CosineClassifier(nn.Linear):
    """Logits that are the cosines between the feature and each identity's weight vector,
    for the margin losses of :mod:`reidkit.losses.margin` (which scale them)."""

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__(feature_dim, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


def make_head(
    feature_dim: int, num_classes: int, bnneck: bool, classifier: str = "linear"
) -> tuple[nn.Module | None, nn.Linear]:
    """The BNNeck (None without one) and the classifier, initialised as BoT does."""
    neck = nn.BatchNorm1d(feature_dim) if bnneck else None
    if neck is not None:
        neck.bias.requires_grad_(False)  # BNNeck: scale only, as in the paper
    if classifier not in CLASSIFIERS:
        raise UsageError(
            f"model.classifier: unknown value {classifier!r}",
            hint=f"one of: {', '.join(CLASSIFIERS)}",
        )
    if classifier == "cosine":
        return neck, CosineClassifier(feature_dim, num_classes)
    classifier = nn.Linear(feature_dim, num_classes, bias=not bnneck)
    nn.init.normal_(classifier.weight, std=0.001)
    if classifier.bias is not None:
        nn.init.zeros_(classifier.bias)
    return neck, classifier


def check_neck_feat(neck_feat: str, bnneck: bool) -> str:
    """``neck_feat`` if known and meaningful (after needs a BNNeck); a UsageError if not."""
    if neck_feat not in NECK_FEATS:
        raise UsageError(
            f"model.neck_feat: unknown value {neck_feat!r}", hint=f"one of: {', '.join(NECK_FEATS)}"
        )
    if neck_feat == "after" and not bnneck:
        raise UsageError("model.neck_feat=after needs the BNNeck, and model.bnneck is off")
    return neck_feat


def head_forward(feature: torch.Tensor, model: nn.Module):
    """The embedding in eval mode; ``(logits, metric feature)`` in train mode, the metric
    feature taken before the BNNeck or after it (``model.neck_feat``).

    ``model`` has ``bnneck`` (or None), ``classifier`` (:func:`make_head`) and ``neck_feat``.
    """
    neck = model.bnneck(feature) if model.bnneck is not None else feature
    if not model.training:
        return neck
    return model.classifier(neck), neck if model.neck_feat == "after" else feature
