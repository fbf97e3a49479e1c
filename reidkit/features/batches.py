"""Decoded image batches for extraction, without torch: the PyTorch and the ONNX Runtime
paths share them, so both feed their model exactly the same pixels.

An item is (uint8 HWC pixels, sample index, error text); a batch stacks them into uint8
(N, H, W, 3). torch's DataLoader collates the same items into tensors when it decodes in
worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from reidkit.data.images import UnreadableImage, read_rgb


class ImageList:
    """A map-style dataset of image files at one size (width, height) for the model,
    resized with ``interpolation`` (:data:`reidkit.data.images.INTERPOLATIONS`)."""

    def __init__(
        self,
        paths: list[str],
        offset: int,
        height: int,
        width: int,
        interpolation: str = "bilinear",
    ) -> None:
        self.paths = paths
        self.offset = offset
        self.size = (width, height)
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, str]:
        try:
            # writable, for torch too
            array = np.array(read_rgb(self.paths[i], self.size, self.interpolation))
            error = ""
        except UnreadableImage as exc:
            array = np.zeros((self.size[1], self.size[0], 3), dtype=np.uint8)
            error = exc.reason
        return array, self.offset + i, error


def batches_in_process(
    images: ImageList, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Batches decoded in this process, between forward passes.

    Measured on 2 cores: decoding beside the model, in worker processes or a thread, slows
    the model's own threads more than the overlap saves; in turn is faster there.
    """
    for start in range(0, len(images), batch_size):
        items = [images[i] for i in range(start, min(len(images), start + batch_size))]
        yield (
            np.stack([a for a, _, _ in items]),
            np.array([i for _, i, _ in items], dtype=np.int64),
            [e for _, _, e in items],
        )


def pixel_offset_divisor(mean: list[float], std: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """The one pixel normalisation of reidkit's inference paths, (x / 255 - mean) / std on
    0..1 values, computed as fast-reid computes it on 0..255 pixels: ``(x - offset) /
    divisor`` with offset = 255 mean and divisor = 255 std, float32 (1, 3, 1, 1). PyTorch
    extraction, ONNX Runtime extraction and the exported graph all use these numbers, so a
    fast-reid model gets, bit for bit, the input fast-reid gives it."""
    mean_ = np.asarray(mean, dtype=np.float64).reshape(1, 3, 1, 1)
    std_ = np.asarray(std, dtype=np.float64).reshape(1, 3, 1, 1)
    return (255.0 * mean_).astype(np.float32), (255.0 * std_).astype(np.float32)


def normalize_nchw(pixels: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """uint8 (N, H, W, 3) to float32 (N, 3, H, W), normalised (:func:`pixel_offset_divisor`)."""
    offset, divisor = pixel_offset_divisor(mean, std)
    x = pixels.transpose(0, 3, 1, 2).astype(np.float32)
    return (x - offset) / divisor
