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


def head_forward(feature: torch.Tensor, model: nn.Module):
    """The embedding in eval mode; ``(logits, feature before the BNNeck)`` in train mode.

    ``model`` has ``bnneck`` (or None) and ``classifier``, made by :func:`make_head`.
    """
    neck = model.bnneck(feature) if model.bnneck is not None else feature
    if not model.training:
        return neck
    return model.classifier(neck), feature
