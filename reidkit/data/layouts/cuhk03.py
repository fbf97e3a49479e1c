"""CUHK03 (Li et al., "DeepReID: Deep Filter Pairing Neural Network for Person
Re-identification", CVPR 2014), with the new protocol of Zhong et al., "Re-ranking Person
Re-identification with k-reciprocal Encoding", CVPR 2017.

Layout under ``<root>/cuhk03/``:

- ``cuhk03_release/cuhk-03.mat``: MATLAB v7.3, that is HDF5. ``labeled`` (hand-drawn boxes)
  and ``detected`` (detector boxes) hold one cell per camera pair (5 pairs, 1467 identities);
  a pair's cell is 10 images by its identities, images 1-5 taken by the pair's first camera
  and 6-10 by its second. Missing images are empty placeholders. ``testsets`` holds the 20
  classic test sets of 100 (camera pair, identity) each, 1-based.
- ``cuhk03_new_protocol_config_labeled.mat`` and ``..._detected.mat`` (optional; also
  accepted inside ``cuhk03_release/``): the new protocol's single split, 767 train and 700
  test identities, as 1-based indices into a list of image file names.

The images live inside the .mat file, so the first parse prepares the folder: every image is
extracted to ``images_labeled/`` or ``images_detected/`` as
``{pair}_{pid:03d}_{view}_{image:02d}.png`` (the names the new protocol's lists use), the
splits are written as JSON with paths relative to the folder (``splits_classic_{kind}.json``,
``splits_new_{kind}.json``), and ``prepared.json`` marks the preparation complete.

Classic protocol: per split, the 100 test identities' images are both query and gallery; the
evaluator's camera filter removes same-camera matches and the ``cuhk03`` protocol makes the
CMC single-gallery-shot. Cameras are numbered 0..9 over the pairs, identities 1..1467 over
the pairs. Available from its authors on request: no public link.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from reidkit.data.layouts.cuhk03_release import (
    KINDS,
    MARKER,
    NUM_CLASSIC_SPLITS,
    OBTAIN,
    RELEASE_MAT,
    config_name,
    find_config,
    missing_release,
    prepare,
    prepare_new_protocol,
    read_marker,
    split_file_name,
)
from reidkit.data.sample import SUBSETS, Dataset, DatasetSpec, Sample, make_dataset
from reidkit.errors import DataError, MissingInputError, UnknownNameError, UsageError

PROTOCOLS = ("new", "classic")


def _missing_config(folder: Path, kind: str) -> MissingInputError:
    return MissingInputError(
        f"cuhk03: the new protocol needs {folder / config_name(kind)}",
        hint=f"put {config_name(kind)} (published with Zhong et al.'s re-ranking code) in "
        f"{folder}, or use cuhk03-classic-{kind} for the classic 20-split protocol",
    )


def _check_choice(what: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"cuhk03: unknown {what} {value!r}; expected one of {', '.join(choices)}")


def dataset_name(kind: str, protocol: str, split: int = 0) -> str:
    """``cuhk03-{kind}`` (new protocol) or ``cuhk03-classic-{kind}``, ``@split`` unless 0."""
    name = f"cuhk03-{kind}" if protocol == "new" else f"cuhk03-classic-{kind}"
    return f"{name}@{split}" if split else name


def parse(folder: Path, *, kind: str = "labeled", protocol: str = "new", split: int = 0) -> Dataset:
    """Parse CUHK03 from ``<root>/cuhk03``, preparing the folder first when needed.

    Args:
        folder: the dataset folder.
        kind: ``labeled`` or ``detected`` boxes.
        protocol: ``new`` (767/700 identities, one split) or ``classic`` (1367/100, 20 splits).
        split: the split, 0..19 for the classic protocol, 0 for the new one.

    Raises:
        UsageError: a bad kind, protocol or split.
        MissingInputError: neither prepared nor holding ``cuhk03_release/cuhk-03.mat``; or the
            new protocol's config file is missing.
        DataError: malformed input, or a split file names an image that is not on disk.
    """
    folder = Path(folder)
    _check_choice("kind", kind, KINDS)
    _check_choice("protocol", protocol, PROTOCOLS)
    num_splits = NUM_CLASSIC_SPLITS if protocol == "classic" else 1
    if isinstance(split, bool) or not isinstance(split, int) or not 0 <= split < num_splits:
        raise UsageError(
            f"cuhk03: no split {split!r} in the {protocol} protocol; "
            f"expected {'0..' + str(num_splits - 1) if num_splits > 1 else '0'}"
        )
    split_file = folder / split_file_name(protocol, kind)
    prepared = read_marker(folder) is not None
    if not prepared and not (folder / RELEASE_MAT).is_file():
        raise missing_release(folder)
    config = None
    if protocol == "new" and not (prepared and split_file.is_file()):
        # fail before a long preparation that could not give what was asked for
        config = find_config(folder, kind)
        if config is None:
            raise _missing_config(folder, kind)
    if not prepared:
        prepare(folder)
    if not split_file.is_file():
        if config is None:
            raise DataError(
                f"cuhk03: {split_file} is missing from a prepared folder",
                hint=f"delete {folder / MARKER} to prepare the folder again",
            )
        prepare_new_protocol(folder, kind, config)
    subsets = _read_split(folder, split_file, split)
    return make_dataset(dataset_name(kind, protocol, split), folder, subsets)


def _read_split(folder: Path, split_file: Path, split: int) -> dict[str, list[Sample]]:
    """Split ``split`` of a split file as samples with absolute paths, checked on disk."""
    try:
        splits = json.loads(split_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cuhk03: cannot read {split_file}: {exc}") from None
    if not isinstance(splits, list) or not 0 <= split < len(splits):
        raise DataError(f"cuhk03: {split_file} holds no split {split}")
    entry = splits[split]
    subsets: dict[str, list[Sample]] = {}
    for subset in SUBSETS:
        rows = entry.get(subset) if isinstance(entry, dict) else None
        if not isinstance(rows, list):
            raise DataError(f"cuhk03: {split_file}: split {split} has no {subset} list")
        samples = []
        for row in rows:
            if not (
                isinstance(row, list)
                and len(row) == 3
                and isinstance(row[0], str)
                and all(isinstance(v, int) and not isinstance(v, bool) for v in row[1:])
                and not os.path.isabs(row[0])
                and ".." not in Path(row[0]).parts
            ):
                raise DataError(
                    f"cuhk03: {split_file}: split {split} {subset}: expected "
                    f"[relative path, pid, camid], got {row!r}"
                )
            samples.append(Sample(str(folder / row[0]), row[1], row[2]))
        subsets[subset] = samples
    paths = {s.path for samples in subsets.values() for s in samples}
    missing = sorted(p for p in paths if not os.path.isfile(p))
    if missing:
        raise DataError(
            f"cuhk03: {split_file} lists {missing[0]}, which does not exist "
            f"({len(missing)} missing images)",
            hint=f"delete {folder / MARKER} to extract the images again",
        )
    return subsets


VARIANTS: dict[str, tuple[str, str]] = {
    "cuhk03-labeled": ("labeled", "new"),
    "cuhk03-detected": ("detected", "new"),
    "cuhk03-classic-labeled": ("labeled", "classic"),
    "cuhk03-classic-detected": ("detected", "classic"),
}


def parse_variant(folder: Path, name: str, split: int = 0) -> Dataset:
    """Parse the registry variant ``name`` (one of :data:`VARIANTS`) at split ``split``.

    Raises:
        UnknownNameError: ``name`` is not a CUHK03 variant.
        UsageError, MissingInputError, DataError: as :func:`parse`.
    """
    if name not in VARIANTS:
        raise UnknownNameError(
            f"cuhk03: unknown variant {name!r}; expected one of {', '.join(VARIANTS)}"
        )
    kind, protocol = VARIANTS[name]
    return parse(folder, kind=kind, protocol=protocol, split=split)


_DESCRIPTIONS = {
    "cuhk03-labeled": "CUHK03 labeled boxes, new protocol: 767 train / 700 test ids",
    "cuhk03-detected": "CUHK03 detected boxes, new protocol: 767 train / 700 test ids",
    "cuhk03-classic-labeled": "CUHK03 labeled boxes, classic protocol: 1367 train / 100 test "
    "ids, 20 splits (split 0 by default)",
    "cuhk03-classic-detected": "CUHK03 detected boxes, classic protocol: 1367 train / 100 test "
    "ids, 20 splits (split 0 by default)",
}

SPECS: list[DatasetSpec] = [
    DatasetSpec(
        name=name,
        folder="cuhk03",
        description=_DESCRIPTIONS[name],
        obtain=OBTAIN,
        parse=functools.partial(parse_variant, name=name),
        splits=NUM_CLASSIC_SPLITS if VARIANTS[name][1] == "classic" else 1,
        protocol="cuhk03" if VARIANTS[name][1] == "classic" else "market",
    )
    for name in VARIANTS
]
