"""The one image decoder: every stage (training, extraction, ranked-list pictures) reads
images through :func:`read_rgb`, so they all see the same pixels."""

from __future__ import annotations

import os

from reidkit.errors import DataError


class UnreadableImage(DataError):
    """An image file that cannot be decoded; ``reason`` says why, without the path."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path, self.reason = str(path), reason


def read_rgb(path: str | os.PathLike[str], size: tuple[int, int] | None = None):
    """The image at ``path`` as an 8-bit RGB PIL image, resized (bilinear) to ``size`` =
    (width, height) when given. Grey, palette, RGBA, CMYK and 16-bit files are converted.

    Raises:
        UnreadableImage: the file is missing, truncated, or not an image.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")  # loads the pixels before the file is closed
    except Exception as exc:  # PIL raises many types for corrupt or foreign files
        raise UnreadableImage(path, f"{type(exc).__name__}: {exc}") from None
    return rgb if size is None else rgb.resize(size, Image.Resampling.BILINEAR)
