"""The training objective: weighted cross-entropy (label smoothing) plus batch-hard triplet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidkit.losses.triplet import batch_hard_triplet


class ReIDLoss(nn.Module):
    """softmax * CE(logits, labels; label_smoothing) + triplet * batch-hard(features, labels).

    ``forward`` returns the total and its parts (detached floats) for logging.
    """

    def __init__(
        self,
        softmax: float = 1.0,
        label_smoothing: float = 0.1,
        triplet: float = 1.0,
        margin: float = 0.3,
        soft_margin: bool = False,
    ) -> None:
        super().__init__()
        self.softmax, self.label_smoothing = softmax, label_smoothing
        self.triplet, self.margin, self.soft_margin = triplet, margin, soft_margin

    def forward(self, logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor):
        parts = {}
        total = logits.new_zeros((), dtype=torch.float32)
        if self.softmax:
            ce = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
            total = total + self.softmax * ce
            parts["ce"] = float(ce.detach())
        if self.triplet:
            tri = batch_hard_triplet(features, labels, self.margin, self.soft_margin)
            total = total + self.triplet * tri
            parts["triplet"] = float(tri.detach())
        return total, parts
