"""What features are made with (:class:`ExtractOptions`), and the one rule for whether a
feature file made before is current: its whole provenance (the model's part, the exact
list of images or tracklets with their labels, every resolved option) against this run's.
Torch-free: a rerun is decided without importing torch."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reidkit.data.images import INTERPOLATIONS
from reidkit.data.sample import Sample, Tracklet
from reidkit.errors import UsageError
from reidkit.features.store import STORAGE_DTYPES, feature_file_info

AMP_MODES = ("off", "bf16", "fp16")


@dataclass
class ExtractOptions:
    """How images become features (all of it is part of the file's provenance). Built once
    by the CLI or the caller of :func:`reidkit.features.jobs.extract_dataset` and passed
    down, as :class:`reidkit.metrics.ranking.Ranking` is; a field left None is filled in
    from the model (:func:`reidkit.features.jobs.resolve_options`: a checkpoint's image
    size, normalisation and pooling, or what the model or ONNX file declares), and the
    runners take only options so resolved. ``mean`` and ``std`` are given only for an ONNX
    file without reidkit's metadata."""

    height: int | None = None
    width: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    # how images are resized: "bilinear" or "bicubic" (fast-reid's models)
    interpolation: str | None = None
    flip: bool = False
    storage: str = "float32"
    amp: str = "off"
    # PyTorch's inference form: the channels_last memory format, and each BatchNorm folded
    # into the convolution before it (:mod:`reidkit.models.folding`; the model file is
    # unchanged). None: the default, :func:`reidkit.features.jobs.resolve_options`.
    channels_last: bool | None = None
    fold_bn: bool | None = None
    # tracklets only (None for images): frames pooled ("all", or seq_len "evenly"), and how
    sample: str | None = None
    seq_len: int | None = None
    temporal: str | None = None
    # "cpu" or "cuda": the kernels that ran the model (None: not recorded, as in training's
    # evaluation); fp32 on CUDA runs without TF32, so its features stay those of fp32
    device: str | None = None

    def check(self) -> None:
        if (self.height is not None and self.height < 1) or (
            self.width is not None and self.width < 1
        ):
            raise UsageError(f"image size must be positive, got {self.height}x{self.width}")
        if self.amp not in AMP_MODES:
            raise UsageError(f"--amp must be one of {', '.join(AMP_MODES)}, not {self.amp!r}")
        if self.storage not in STORAGE_DTYPES:
            raise UsageError(
                f"--storage must be one of {', '.join(STORAGE_DTYPES)}, not {self.storage!r}"
            )
        if self.interpolation not in (None, *INTERPOLATIONS):
            raise UsageError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                f"not {self.interpolation!r}"
            )
        if self.sample not in (None, "all", "evenly"):
            raise UsageError(f"--sample must be all or evenly, not {self.sample!r}")
        if self.temporal not in (None, "avg", "max"):
            raise UsageError(f"--temporal must be avg or max, not {self.temporal!r}")
        if self.seq_len is not None and self.seq_len < 1:
            raise UsageError(f"--seq-len must be at least 1, got {self.seq_len}")

    @property
    def resize(self) -> str:
        """The interpolation images are resized with (bilinear when not set)."""
        return self.interpolation or INTERPOLATIONS[0]

    def provenance(self) -> dict[str, Any]:
        """The options as a file's provenance records them (the tracklet ones only when
        they apply, and the resize only when it is not the bilinear one every file was
        made with before it was an option, so files made before stay current)."""
        given = {k: v for k, v in asdict(self).items() if v is not None}
        if given.get("interpolation") == "bilinear":
            del given["interpolation"]
        return given


def samples_sha256(samples: list[Sample | Tracklet], root: Path) -> str:
    """A digest of the image (or tracklet frame) list and labels, to tell whether a file is
    up to date."""
    digest = hashlib.sha256()
    for s in samples:
        files = s.paths if isinstance(s, Tracklet) else (s.path,)
        names = "|".join(os.path.relpath(f, root) for f in files)
        digest.update(f"{names}\t{s.pid}\t{s.camid}\t{s.dsetid}\n".encode())
    return digest.hexdigest()


def file_provenance(
    attrs: dict[str, Any], samples: list[Sample | Tracklet], root: Path, options: ExtractOptions
) -> dict[str, Any]:
    """What a feature file records as having made it: the model's part (``attrs``'
    "provenance"), the images (or tracklets) with their labels, and every option."""
    return {
        **attrs.get("provenance", {}),
        "images": samples_sha256(samples, root),
        "options": options.provenance(),
    }


def is_up_to_date(path: Path, provenance: dict) -> bool:
    """True when ``path`` is a complete feature file made from the same inputs and options.

    The one rule for "is this file current?": the file's whole provenance against this
    run's (:func:`file_provenance`, its options fully resolved), whether the run goes
    through PyTorch or ONNX Runtime, and also when a rerun is decided without torch.
    """
    try:
        attrs = feature_file_info(path)["attrs"]
    except Exception:  # a missing, unreadable or foreign file is simply redone
        return False
    return is_current(attrs, provenance)


def is_current(attrs: dict[str, Any], provenance: dict) -> bool:
    """:func:`is_up_to_date` on the attributes of a file read already."""
    return attrs.get("complete") is True and attrs.get("provenance") == json.dumps(
        provenance, sort_keys=True
    )
