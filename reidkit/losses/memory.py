"""The cluster memory of Cluster Contrast (Dai et al., "Cluster Contrast for Unsupervised
Person Re-Identification", ACCV 2022): one L2-normalised centroid per pseudo-identity; its
logits are each feature's cosine similarities to every centroid over a temperature (the
loss their cross-entropy), and after each step every sample's centroid moves towards it:
``c <- m c + (1 - m) f``, then normalised again (the paper's m is 0.1).

The centroids are a buffer, not parameters: no optimiser touches them, the checkpoint
holds them, and :meth:`ClusterMemory.reset` replaces them each epoch with the mean of each
new cluster's features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClusterMemory(nn.Module):
    """Args:
    feature_dim: the features' length.
    temperature: the softmax's temperature (the paper's 0.05).
    momentum: how much of a centroid stays at each update (the paper's 0.1).
    """

    def __init__(self, feature_dim: int, temperature: float = 0.05, momentum: float = 0.1):
        super().__init__()
        self.temperature, self.momentum = temperature, momentum
        self.register_buffer("centroids", torch.zeros(0, feature_dim))

    def reset(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Centroids: the normalised mean of each cluster's normalised features (labels
        0..K-1; outliers, -1, are left out)."""
        keep = labels >= 0
        feats, labels = F.normalize(features[keep].float(), dim=1), labels[keep]
        k = int(labels.max()) + 1 if len(labels) else 0
        sums = torch.zeros(k, feats.shape[1], dtype=feats.dtype, device=feats.device)
        sums.index_add_(0, labels, feats)
        self.centroids = F.normalize(sums, dim=1).to(self.centroids.device)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The normalised features' cosine similarity to every centroid over the
        temperature, in float32: the logits the identity loss's cross-entropy takes."""
        # in float32 under autocast too: cosines near 1 over a temperature of 0.05 need it
        with torch.autocast(features.device.type, enabled=False):
            return F.normalize(features.float(), dim=1) @ self.centroids.T / self.temperature

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Move each sample's centroid towards it, one sample after another in batch order
        (as the reference does: a centroid seen twice in a batch moves twice)."""
        feats = F.normalize(features.detach().float(), dim=1)
        m = self.momentum
        for f, y in zip(feats, labels.tolist(), strict=True):
            self.centroids[y] = F.normalize(m * self.centroids[y] + (1 - m) * f, dim=0)
