"""PRID2011 (Hirzer et al., "Person Re-Identification by Descriptive and Discriminative
Classification", SCIA 2011), multi-shot: 385 persons in camera A and 749 in camera B, the
first 200 in both.

Layout under ``<root>/prid2011/``: ``prid_2011/multi_shot/cam_a/person_NNNN/NNNN.png`` and
``.../cam_b/...`` (``multi_shot/`` directly in the folder is read too). The usual protocol
(Wang et al., ECCV 2014) keeps the persons seen by both cameras with more than 21 frames
in each (178) and halves them at random ten times. Those halvings are drawn from seed 0 and
stored in ``splits.json`` (person folder names) on the first parse; torchreid's
``splits_prid2011.json``, when present, is read instead, so numbers compare with its papers.
``prid2011@N`` picks split N.

Protocol: train on both cameras' sequences of the train persons; query = camera A's
sequences of the test persons, gallery = camera B's.
"""

from __future__ import annotations

from pathlib import Path

from reidkit.data.sample import Dataset, DatasetSpec, make_dataset
from reidkit.data.tracklets import frames_in, stored_splits, subfolders, two_camera_subsets
from reidkit.errors import DataError, MissingInputError

NAME = "prid2011"
NUM_SPLITS = 10
SEED = 0
MIN_FRAMES = 22  # "more than 21 frames"
MULTI_SHOT = "prid_2011/multi_shot"
SPLITS_FILE = "splits.json"
TORCHREID_SPLITS = "splits_prid2011.json"
PNG = frozenset({".png"})


def parse(folder: Path, split: int = 0) -> Dataset:
    """Parse split ``split`` of PRID2011 from ``<root>/prid2011``."""
    shots = folder / MULTI_SHOT
    if not shots.is_dir() and (folder / "multi_shot").is_dir():  # the zip's own top level
        shots = folder / "multi_shot"
    cams = [shots / "cam_a", shots / "cam_b"]
    for cam in cams:
        if not cam.is_dir():
            raise MissingInputError(
                f"{NAME}: {cam} is missing", hint=f"extract prid_2011.zip into {folder}"
            )
    both = set(subfolders(cams[0])) & set(subfolders(cams[1]))
    persons = [
        p
        for p in subfolders(cams[0])
        if p in both and all(len(frames_in(c / p, PNG)) >= MIN_FRAMES for c in cams)
    ]
    if len(persons) < 2:
        raise DataError(
            f"{NAME}: {len(persons)} person(s) have {MIN_FRAMES}+ frames in both cameras; "
            "a split needs 2"
        )
    given = folder / TORCHREID_SPLITS
    splits = stored_splits(
        given if given.is_file() else folder / SPLITS_FILE,
        persons,
        NUM_SPLITS,
        SEED,
        note=f"{NAME}: random halves of the persons with {MIN_FRAMES}+ frames in both cameras",
    )
    if split >= len(splits):
        raise DataError(f"{NAME}: split {split} asked for, the splits file holds {len(splits)}")
    return make_dataset(
        f"{NAME}@{split}" if split else NAME,
        folder,
        two_camera_subsets(cams, splits[split], PNG),
        camera_base=1,  # camera A is shown as 1, B as 2
    )


SPEC = DatasetSpec(
    name=NAME,
    folder="prid2011",
    description="PRID2011 multi-shot (video): 178 ids with 22+ frames, 2 cameras, 10 splits",
    obtain="download prid_2011.zip from TU Graz's PRID2011 page (after its form), then "
    "reidkit datasets download prid2011 --archive prid_2011.zip --root {root}",
    parse=parse,
    splits=NUM_SPLITS,
)
