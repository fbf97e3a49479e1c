"""The one image decoder: every stage (training, extraction, ranked-list pictures) reads
images through :func:`read_rgb`, so they all see the same pixels."""

from __future__ import annotations

import os

from reidkit.errors import DataError

# how images are resized to the model's input: torchreid's and reidkit's bilinear, or
# fast-reid's bicubic (its transforms' ``interpolation=3``); PIL's resampling filters
INTERPOLATIONS = ("bilinear", "bicubic")  # the first is the default


class UnreadableImage(DataError):
    """An image file that cannot be decoded; ``reason`` says why, without the path."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path, self.reason = str(path), reason

    def __reduce__(self):  # pickled as it is built, so it crosses process boundaries
        return type(self), (self.path, self.reason)


def read_rgb(
    path: str | os.PathLike[str],
    size: tuple[int, int] | None = None,
    interpolation: str = "bilinear",
):
    """The image at ``path`` as an 8-bit RGB PIL image, resized to ``size`` = (width,
    height) when given, with ``interpolation`` (:data:`INTERPOLATIONS`). Grey, palette,
    RGBA, CMYK and 16-bit files are converted.

    Raises:
        UnreadableImage: the file is missing, truncated, or not an image.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")  # loads the pixels before the file is closed
    except Exception as exc:  # PIL raises many types for corrupt or foreign files
        raise UnreadableImage(path, f"{type(exc).__name__}: {exc}") from None
    if size is None:
        return rgb
    return rgb.resize(size, Image.Resampling[interpolation.upper()])


def _reason_unreadable(path: str) -> tuple[str, str] | None:
    try:
        read_rgb(path)
    except UnreadableImage as exc:
        return exc.path, exc.reason  # plain values: they come back from worker processes
    return None


def find_unreadable(paths: list[str], workers: int | None = None) -> list[UnreadableImage]:
    """Decode every image once (in ``workers`` processes, one per core by default); the
    ones that fail, in path order."""
    from reidkit.parallel import imap_workers

    found = imap_workers(_reason_unreadable, paths, workers, chunksize=64)
    return [UnreadableImage(*bad) for bad in sorted(f for f in found if f is not None)]
