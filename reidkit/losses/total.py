"""The training objective: a weighted identity loss (cross-entropy with label smoothing,
or CosFace / Circle on cosine logits), batch-hard triplet and center loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidkit.losses.center import CenterLoss
from reidkit.losses.margin import DEFAULTS, margin_logits
from reidkit.losses.triplet import MINING, triplet_from_pairs


class ReIDLoss(nn.Module):
    """softmax * CE(logits, labels; label_smoothing) + triplet * batch-hard(features,
    labels) + center * center(features, labels), where with ``id_loss`` "cosface" or
    "circle" the logits are cosines turned into that loss's logits first.

    ``forward`` returns the total and its parts (detached 0-d tensors, on the features'
    device: reading them is the caller's one wait for the device) for logging: the terms,
    and what shows whether the metric term is working: the mean feature norm, the mean
    hardest positive and negative distances (``d_ap``, ``d_an``) and the fraction of
    anchors whose hinge is active (``active``; 1.0 with every anchor violating the margin),
    all over the anchors that have a positive and a negative (0 without any).
    The center loss (``center`` > 0) has parameters: ``self.center``, None without it.
    """

    def __init__(
        self,
        softmax: float = 1.0,
        label_smoothing: float = 0.1,
        triplet: float = 1.0,
        margin: float = 0.3,
        soft_margin: bool = False,
        center: float = 0.0,
        num_classes: int = 0,
        feature_dim: int = 0,
        id_loss: str = "ce",
        id_scale: float | None = None,
        id_margin: float | None = None,
        mining: str = "hard",
    ) -> None:
        super().__init__()
        self.pairs = MINING[mining]
        self.softmax, self.label_smoothing = softmax, label_smoothing
        self.id_loss = id_loss
        if id_loss != "ce":
            scale, margin_ = DEFAULTS[id_loss]
            self.id_scale = scale if id_scale is None else id_scale
            self.id_margin = margin_ if id_margin is None else id_margin
        self.triplet, self.margin, self.soft_margin = triplet, margin, soft_margin
        self.center_weight = center
        self.center = CenterLoss(num_classes, feature_dim) if center else None

    @classmethod
    def from_config(cls, loss, num_classes: int, feature_dim: int) -> ReIDLoss:
        """From a run's ``loss`` section (:class:`reidkit.config.LossConfig`)."""
        return cls(
            loss.softmax,
            loss.label_smoothing,
            loss.triplet,
            loss.margin,
            loss.soft_margin,
            loss.center,
            num_classes,
            feature_dim,
            loss.id_loss,
            loss.id_scale,
            loss.id_margin,
            loss.triplet_mining,
        )

    def forward(self, logits: torch.Tensor, features, labels: torch.Tensor):
        """``logits`` (N, classes), or (N, heads, classes) for a classifier per part or
        head (PCB, MGN): the identity loss is their mean. ``features`` (N, D), or a tuple of
        them (MGN's): the triplet loss is the mean of theirs, and the logged distances are
        the first's."""
        parts = {}
        total = logits.new_zeros((), dtype=torch.float32)
        several = isinstance(features, tuple)
        if self.softmax:
            labels_ce = labels
            if logits.dim() == 3:  # one classifier per part or head: the mean over them
                logits, labels_ce = logits.flatten(0, 1), labels.repeat_interleave(logits.shape[1])
            if self.id_loss != "ce":
                logits = margin_logits(
                    logits, labels_ce, self.id_loss, self.id_scale, self.id_margin
                )
            ce = F.cross_entropy(logits.float(), labels_ce, label_smoothing=self.label_smoothing)
            total = total + self.softmax * ce
            parts["ce"] = ce.detach()
        every = (
            [self.pairs(f, labels) for f in features] if several else [self.pairs(features, labels)]
        )
        pairs = every[0]
        features = features[0] if several else features
        if self.triplet:
            terms = [triplet_from_pairs(p, self.margin, self.soft_margin) for p in every]
            tri = terms[0] if len(terms) == 1 else torch.stack(terms).mean()
            total = total + self.triplet * tri
            parts["triplet"] = tri.detach()
        if self.center is not None:
            center = self.center(features, labels)
            total = total + self.center_weight * center
            parts["center"] = center.detach()
        with torch.no_grad():
            parts["feat_norm"] = features.float().norm(dim=1).mean()
            parts["d_ap"], parts["d_an"] = pairs.mean(pairs.d_ap), pairs.mean(pairs.d_an)
            parts["active"] = pairs.mean((pairs.d_ap - pairs.d_an + self.margin > 0).float())
        return total, parts
