"""What every re-ID network shares: a frame feature, a head, and temporal pooling.

A network is ``head(features(x))``. ``features`` maps images (N, 3, H, W) to one vector each
(the pooled trunk output the head starts from); ``head`` maps vectors to the embedding in
eval mode, or to ``(logits, feature)`` in train mode. Clips (B, S, 3, H, W) of S frames go
through the same trunk as B*S images; their frame features are pooled over time (``avg``
or ``max``, the ``temporal`` attribute) before the head, so a video model is the image
model, parameter for parameter, and its checkpoints are interchangeable with image ones.

Because pooling comes before the head, the features of a long tracklet can be computed in
chunks of frames and pooled at the end (:mod:`reidkit.features.tracklets`): the result is
the pooling of all its frames, whatever the chunks.
"""

from __future__ import annotations

import torch
from torch import nn

from reidkit.data.clips import PackedClips

TEMPORAL = ("avg", "max")


def pool_frames(features: torch.Tensor, frames: int | list[int], how: str) -> torch.Tensor:
    """(N, D) frame features, a clip's consecutive rows (``frames`` each, or a list of clip
    lengths), to (B, D)."""
    if isinstance(frames, int):
        clips = features.unflatten(0, (-1, frames))
        return clips.mean(1) if how == "avg" else clips.amax(1)
    return torch.cat([pool_frames(clip, len(clip), how) for clip in features.split(frames)])


class ReIDNet(nn.Module):
    """Base of the registered networks: ``forward`` takes images or clips."""

    temporal = "avg"  # how clips are pooled over time; set from model.temporal

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

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
