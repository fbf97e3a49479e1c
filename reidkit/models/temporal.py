"""Temporal pooling: a clip's frame features to one vector, by ``avg`` or ``max``.

Clips (B, S, 3, H, W) of S frames go through a network's trunk as B*S images
(:class:`reidkit.models.net.ReIDNet`); their frame features are pooled over time before
the head, so a video model is the image model, parameter for parameter, and its
checkpoints are interchangeable with image ones.

Because pooling comes before the head, the features of a long tracklet can be computed in
chunks of frames and pooled at the end (:mod:`reidkit.features.tracklets`): the result is
the pooling of all its frames, whatever the chunks.
"""

from __future__ import annotations

import torch

TEMPORAL = ("avg", "max")


def pool_frames(features: torch.Tensor, frames: int | list[int], how: str) -> torch.Tensor:
    """(N, D) frame features, a clip's consecutive rows (``frames`` each, or a list of clip
    lengths), to (B, D)."""
    if isinstance(frames, int):
        clips = features.unflatten(0, (-1, frames))
        return clips.mean(1) if how == "avg" else clips.amax(1)
    return torch.cat([pool_frames(clip, len(clip), how) for clip in features.split(frames)])
