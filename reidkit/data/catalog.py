"""The dataset registry and the one entry point that turns a name or a path into a Dataset."""

from __future__ import annotations

import os
from pathlib import Path

from reidkit.data.layouts import (
    cuhk03,
    dukemtmcvidreid,
    ilidsvid,
    market,
    mars,
    msmt17,
    prid2011,
)
from reidkit.data.sample import Dataset, DatasetSpec
from reidkit.data.synth import images as synth_images
from reidkit.data.synth import video as synth_video
from reidkit.errors import MissingInputError, UnknownNameError, UsageError
from reidkit.registry import Registry

DATASETS: Registry[DatasetSpec] = Registry("dataset")
_IMAGE = (
    market.MARKET1501,
    market.DUKEMTMC_REID,
    msmt17.SPEC,
    *cuhk03.SPECS,
    synth_images.SPEC,
    synth_images.SPEC_B,
)
_VIDEO = (mars.SPEC, dukemtmcvidreid.SPEC, ilidsvid.SPEC, prid2011.SPEC, synth_video.SPEC)
for _spec in (*_IMAGE, *_VIDEO):
    DATASETS.add(_spec.name, _spec)


def list_datasets(root: Path) -> list[dict]:
    """Every known dataset with whether it is present under ``root`` and how to get it."""
    return [
        {
            "name": spec.name,
            "present": spec.is_present(root),
            "path": str(spec.path(root)),
            "description": spec.description,
            "obtain": spec.how_to_obtain(root),
        }
        for spec in (DATASETS.get(n) for n in DATASETS.names())
    ]


def protocol_of(dataset: str) -> str | None:
    """The evaluation protocol of a registered dataset (``NAME`` or ``NAME@N``, as feature
    files record it); None for a dataset of one's own (a folder or manifest)."""
    name = dataset.partition("@")[0]
    return DATASETS.get(name).protocol if name in DATASETS else None


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.startswith(".") or value.lower().endswith(".csv")


def _split_index(spec: DatasetSpec, text: str) -> int:
    """N of ``NAME@N``: a split the dataset defines."""
    if spec.splits == 1:
        raise UsageError(f"{spec.name} has one split; '@{text}' selects nothing")
    if not text.isdigit() or int(text) >= spec.splits:
        raise UsageError(
            f"{spec.name}@{text}: the split must be 0 to {spec.splits - 1}",
            hint=f"for example {spec.name}@0",
        )
    return int(text)


def load_dataset(name_or_path: str, root: str | os.PathLike[str] = "data") -> Dataset:
    """Parse a dataset given by registry name (under ``root``; ``NAME@N`` for split N of a
    dataset with several), manifest file or folder.

    Raises:
        MissingInputError: the dataset's folder or the given path does not exist.
        UnknownNameError: neither a known name nor an existing path.
    """
    root = Path(root)
    name, _, split_text = name_or_path.partition("@")
    if name in DATASETS:
        spec = DATASETS.get(name)
        split = _split_index(spec, split_text) if "@" in name_or_path else None
        folder = spec.path(root)
        if not folder.is_dir():
            raise MissingInputError(
                f"{spec.name} not found: expected the folder {folder}",
                hint=spec.how_to_obtain(root),
            )
        return spec.parse(folder) if split is None else spec.parse(folder, split=split)
    path = Path(name_or_path)
    if path.is_file():
        from reidkit.data.manifest import read_manifest

        return read_manifest(path)
    if path.is_dir():
        from reidkit.data.layouts.folder import parse_folder

        return parse_folder(path)
    if _looks_like_path(name_or_path):
        raise MissingInputError(f"no such dataset file or folder: {name_or_path}")
    raise UnknownNameError(
        DATASETS.unknown_message(name_or_path),
        hint=f"known datasets: {', '.join(DATASETS.names())}; "
        "or give the path of a Market-style folder or a CSV manifest",
    )
