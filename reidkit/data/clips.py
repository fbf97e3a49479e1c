"""Which frames of a tracklet make a clip (torchreid's ``sample_method``).

- ``evenly``: ``seq_len`` frames spread over the whole tracklet, each the middle frame of
  its stretch (a tracklet shorter than ``seq_len`` repeats frames). Deterministic.
- ``random``: ``seq_len`` frames drawn without replacement (with, when the tracklet is
  shorter), in time order, from torch's generator, as the augmentations draw: a resumed run
  draws what the uninterrupted one would.
- ``all``: every frame (extraction only: clips of different lengths do not batch).
"""

from __future__ import annotations

SAMPLES = ("evenly", "random", "all")


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
