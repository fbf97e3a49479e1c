"""Which frames of a tracklet make a clip (torchreid's ``sample_method``).

- ``evenly``: ``seq_len`` frames spread over the whole tracklet, each the middle frame of
  its stretch (a tracklet shorter than ``seq_len`` repeats frames). Deterministic.
- ``random``: ``seq_len`` frames drawn without replacement (with, when the tracklet is
  shorter), in time order, from torch's generator, as the augmentations draw: a resumed run
  draws what the uninterrupted one would.
- ``all``: every frame. Clips of different lengths do not stack, so a training batch of
  them is :class:`PackedClips`: the frames one clip after another, and each clip's length.
  A training batch holds at most ``data.max_frames`` frames (:func:`frame_caps`): every
  frame of its shorter tracklets, and of the longest as many as fit, drawn as ``random``
  draws them (a different subset each epoch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import torch

SAMPLES = ("evenly", "random", "all")


class PackedClips(NamedTuple):
    """A batch of clips of different lengths: ``frames`` (N, 3, H, W), clip after clip, and
    ``lengths`` (B,) frames per clip, summing to N."""

    frames: torch.Tensor
    lengths: torch.Tensor

    def to(self, device, **kwargs) -> PackedClips:
        return PackedClips(self.frames.to(device, **kwargs), self.lengths)


def frame_count(batch) -> int:
    """Frames in a training batch: images (N, 3, H, W), clips (B, S, 3, H, W) or packed."""
    if isinstance(batch, PackedClips):
        return batch.frames.shape[0]
    return batch.shape[0] * (batch.shape[1] if batch.dim() == 5 else 1)


def pack_clips(batch) -> tuple[PackedClips, torch.Tensor]:
    """DataLoader collate of ``(clip (S_i, 3, H, W), label)`` items of any lengths."""
    import torch

    clips, labels = zip(*batch, strict=True)
    lengths = torch.tensor([len(c) for c in clips])
    return PackedClips(torch.cat(clips), lengths), torch.tensor(labels)


def frame_caps(lengths: list[int], budget: int) -> list[int]:
    """Frames each clip of a batch keeps so that the batch holds at most ``budget``:
    every frame of the tracklets shorter than a common cap, and the cap (the largest that
    fits) of the others. ``budget`` must be at least ``len(lengths)``."""
    if budget < len(lengths):
        raise ValueError(f"a budget of {budget} frames cannot hold {len(lengths)} clips")
    left, cap = budget, max(lengths, default=0)
    for i, length in enumerate(sorted(lengths)):
        rest = len(lengths) - i
        if length * rest > left:  # this one and all longer ones are cut to one length
            cap = left // rest
            break
        left -= length
    return [min(length, cap) for length in lengths]


def pick_frames(frames: int, seq_len: int, how: str) -> list[int]:
    """Indices of the frames of a ``frames``-long tracklet that make its clip."""
    if how == "all":
        return list(range(frames))
    if how == "evenly":
        return [min(frames - 1, int((i + 0.5) * frames / seq_len)) for i in range(seq_len)]
    if how == "random":
        import torch

        if frames >= seq_len:
            drawn = torch.randperm(frames)[:seq_len]
        else:
            drawn = torch.randint(frames, (seq_len,))
        return sorted(drawn.tolist())
    raise ValueError(f"unknown frame sampling {how!r}; expected one of {', '.join(SAMPLES)}")
