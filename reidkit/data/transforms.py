"""Image transforms for training (torchvision v2 on PIL images) and the matching resize;
clips of tracklets get the same transform, one draw for all their frames."""

from __future__ import annotations

from typing import Any

from reidkit.data.images import read_rgb


def train_transform(data: Any):
    """Optional AutoAugment (with probability ``data.autoaugment``, before the resize, as
    fast-reid applies it), resize, random flip, pad and random crop, optional colour jitter,
    to a normalised tensor, random erasing; ``data`` is a :class:`reidkit.config.DataConfig`."""
    import torch
    from torchvision.transforms import v2

    size = (data.height, data.width)
    steps = []
    if data.autoaugment > 0:
        policy = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)
        steps.append(v2.RandomApply([policy], p=data.autoaugment))
    resize = v2.InterpolationMode[data.interpolation.upper()]  # PIL's filter on PIL images
    steps.append(v2.Resize(size, interpolation=resize))
    if data.flip > 0:
        steps.append(v2.RandomHorizontalFlip(data.flip))
    if data.pad > 0:
        steps += [v2.Pad(data.pad), v2.RandomCrop(size)]
    if data.color_jitter > 0:
        c = data.color_jitter
        steps.append(v2.ColorJitter(brightness=c, contrast=c, saturation=c))
    steps += [
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(data.mean, data.std),
    ]
    if data.erasing > 0:
        steps.append(v2.RandomErasing(p=data.erasing, value=0))
    return v2.Compose(steps)


class TrainImages:
    """(image tensor, label) of training samples."""

    def __init__(self, samples, transform) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        sample = self.samples[i]
        return self.transform(read_rgb(sample.path)), sample.pid


class TrainClips:
    """(clip tensor (S, 3, H, W), label) of training tracklets: ``seq_len`` frames picked by
    ``how`` (:mod:`reidkit.data.clips`), each resized as an image is, then the training
    transform applied to the clip as one video, so every frame gets the same flip, crop and
    erasing (a torchvision ``Video``). An item is a tracklet's index, or with ``how="all"``
    ``(index, cap)``: a tracklet longer than ``cap`` gives ``cap`` random frames in time
    order (the batch's frame budget, :func:`reidkit.data.clips.frame_caps`)."""

    def __init__(
        self,
        tracklets,
        transform,
        size: tuple[int, int],
        seq_len: int,
        how: str,
        interpolation: str = "bilinear",
    ) -> None:
        self.tracklets, self.transform = tracklets, transform
        self.interpolation = interpolation
        self.size, self.seq_len, self.how = size, seq_len, how  # size: (width, height)

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, item: int | tuple[int, int]):
        import numpy as np
        import torch
        from torchvision import tv_tensors

        from reidkit.data.clips import pick_frames

        i, cap = item if isinstance(item, tuple) else (item, None)
        t = self.tracklets[i]
        if cap is not None and t.frames > cap:
            picked = pick_frames(t.frames, cap, "random")
        else:
            picked = pick_frames(t.frames, self.seq_len, self.how)
        frames = [np.asarray(read_rgb(t.paths[j], self.size, self.interpolation)) for j in picked]
        video = tv_tensors.Video(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2))
        return self.transform(video).as_subclass(torch.Tensor), t.pid
