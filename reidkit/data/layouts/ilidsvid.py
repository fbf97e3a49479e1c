"""iLIDS-VID (Wang et al., "Person Re-Identification by Video Ranking", ECCV 2014): 300
persons, one sequence in each of 2 cameras, 23 to 192 frames each.

Layout under ``<root>/ilids-vid/``: ``i-LIDS-VID/sequences/cam1/personNNN/*.png`` and
``.../cam2/...``, and the authors' ten splits in ``train-test people splits/
train_test_splits_ilidsvid.mat`` (``ls_set``: 10 rows of the 300 person numbers, 1-based
into the sorted person folders; the first half of a row is the test persons, as Wang et al.
and torchreid read it). Without that file, ten random halvings are drawn from seed 0 and
stored in ``splits.json`` (person folder names). ``ilidsvid@N`` picks split N.

Protocol: train on both cameras' sequences of the train persons; query = camera 1's
sequences of the test persons, gallery = camera 2's.
"""

from __future__ import annotations

from pathlib import Path

from reidkit.data.sample import Dataset, DatasetSpec, make_dataset
from reidkit.data.tracklets import stored_splits, subfolders, two_camera_subsets
from reidkit.errors import DataError, MissingInputError

NAME = "ilidsvid"
NUM_SPLITS = 10
SEED = 0
SEQUENCES = "i-LIDS-VID/sequences"
SPLIT_MAT = "train-test people splits/train_test_splits_ilidsvid.mat"
SPLITS_FILE = "splits.json"


def _official_splits(path: Path, persons: list[str]) -> list[dict[str, list[str]]]:
    from scipy.io import loadmat

    try:
        rows = loadmat(path)["ls_set"]
    except Exception as exc:  # scipy raises several types for files that are not .mat
        raise DataError(f"{path}: not the iLIDS-VID split file ({exc})") from None
    if rows.ndim != 2 or rows.shape[1] != len(persons) or rows.min() < 1:
        raise DataError(
            f"{path}: ls_set is {rows.shape}, expected rows of the {len(persons)} person "
            "numbers (1-based)"
        )
    half = len(persons) // 2
    return [
        {
            "train": [persons[int(i) - 1] for i in sorted(row[half:])],
            "test": [persons[int(i) - 1] for i in sorted(row[:half])],
        }
        for row in rows.tolist()
    ]


def parse(folder: Path, split: int = 0) -> Dataset:
    """Parse split ``split`` of iLIDS-VID from ``<root>/ilids-vid``."""
    cams = [folder / SEQUENCES / "cam1", folder / SEQUENCES / "cam2"]
    for cam in cams:
        if not cam.is_dir():
            raise MissingInputError(
                f"{NAME}: {cam} is missing", hint=f"extract iLIDS-VID.tar into {folder}"
            )
    persons, other = subfolders(cams[0]), subfolders(cams[1])
    if set(persons) != set(other):
        odd = sorted(set(persons) ^ set(other))
        raise DataError(f"{NAME}: {odd[0]} has a sequence in one camera only")
    if (folder / SPLIT_MAT).is_file():
        splits = _official_splits(folder / SPLIT_MAT, persons)
    else:
        splits = stored_splits(
            folder / SPLITS_FILE, persons, NUM_SPLITS, SEED, note=f"{NAME}: random halves"
        )
    if split >= len(splits):
        raise DataError(f"{NAME}: split {split} asked for, the splits file holds {len(splits)}")
    return make_dataset(
        f"{NAME}@{split}" if split else NAME,
        folder,
        two_camera_subsets(cams, splits[split], frozenset({".png"})),
        camera_base=1,
    )


SPEC = DatasetSpec(
    name=NAME,
    folder="ilids-vid",
    description="iLIDS-VID (video): 300 ids, 2 cameras, 10 splits (split 0 by default)",
    obtain="reidkit datasets download ilidsvid --root {root}",
    parse=parse,
    splits=NUM_SPLITS,
)
