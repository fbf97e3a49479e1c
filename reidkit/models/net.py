"""What every registered re-ID network is: ``head(features(x))``.

``features`` maps images (N, 3, H, W) to one vector each (the pooled trunk output the head
starts from); ``head`` maps vectors to the embedding in eval mode, or to ``(logits,
feature)`` in train mode. Images, clips of one length (B, S, 3, H, W) and packed clips of
different lengths all go through ``forward``: a clip's frame features are pooled over time
(:mod:`reidkit.models.temporal`) before the head.
"""

from __future__ import annotations

import torch
from torch import nn

from reidkit.data.clips import PackedClips
from reidkit.models.temporal import pool_frames


class ReIDNet(nn.Module):
    """Base of the registered networks: ``forward`` takes images or clips."""

    temporal = "avg"  # how clips are pooled over time; set from model.temporal
    # what may stay unloaded from a weights file for extraction: the identity classifier
    # (modules, or tensors: MGN's heads each hold their classifier's weight)
    classifier_names: tuple[str, ...] = ("classifier",)
    # parameter names (prefixes) only the identity loss trains: frozen without it
    identity_only: tuple[str, ...] = ("classifier.", "bnneck.")
    metric_features = 1  # features the metric losses see (MGN: several, one term each)
    # modules that options add to the trunk (non-local blocks): ImageNet files never hold
    # them, so a start from one leaves them as initialised (they start as the identity)
    option_layers: tuple[str, ...] = ()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_input(self, height: int, width: int) -> None:
        """Raise a UsageError for images of a size the model cannot take (MGN's parts)."""

    def head(self, feature: torch.Tensor):
        raise NotImplementedError

    def forward(self, x):
        if isinstance(x, PackedClips):  # clips of different lengths, each pooled alone
            frames = self.features(x.frames)
            return self.head(pool_frames(frames, x.lengths.tolist(), self.temporal))
        if x.dim() == 5:  # clips: the frames through the trunk, pooled over time
            frames = self.features(x.flatten(0, 1))
            return self.head(pool_frames(frames, x.shape[1], self.temporal))
        return self.head(self.features(x))
