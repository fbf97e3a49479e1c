"""Center loss (Wen et al., "A Discriminative Feature Learning Approach for Deep Face
Recognition", ECCV 2016), as BoT uses it: one learned center per training identity, and
the loss the mean squared Euclidean distance of each feature to its identity's center.

The centers are parameters of the loss, not of the model: they are trained by an
optimiser of their own (SGD at ``loss.center_lr``, BoT's 0.5), and their gradient is
divided by the loss weight before that step, so the weight (BoT's 0.0005) scales what the
model learns from the centers and not how fast the centers follow the features.
"""

from __future__ import annotations

import torch
from torch import nn


class CenterLoss(nn.Module):
    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, feature_dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """mean_i ||features_i - centers[labels_i]||^2, in float32."""
        return (features.float() - self.centers[labels]).pow(2).sum(1).mean()
