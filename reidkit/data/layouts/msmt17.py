"""MSMT17 (Wei et al., "Person Transfer GAN to Bridge Domain Gap for Person
Re-Identification", CVPR 2018).

Layout: ``<root>/msmt17/MSMT17_V1/{train,test}`` or ``<root>/msmt17/MSMT17_V2/{mask_train_v2,
mask_test_v2}``, each with ``list_{train,val,query,gallery}.txt`` whose lines are
``relative/path.jpg pid``. The camera is the third ``_`` field of the file name (1..15).
The train subset is ``list_train.txt`` as in the conventional setting; ``list_val.txt`` holds
more images of the same identities and is left out, as torchreid and the paper's
protocol do. Available from its authors on request: no public link.
"""

from __future__ import annotations

import os
from pathlib import Path

from reidkit.data.sample import Dataset, DatasetSpec, Sample, make_dataset
from reidkit.errors import DataError, MissingInputError

NUM_CAMERAS = 15
VERSIONS = {
    "MSMT17_V2": ("mask_train_v2", "mask_test_v2"),
    "MSMT17_V1": ("train", "test"),
}
LISTS = {"train": "list_train.txt", "query": "list_query.txt", "gallery": "list_gallery.txt"}


def read_list(list_file: Path, image_dir: Path) -> list[Sample]:
    """Samples of one list file; a malformed line is a DataError naming file and line."""
    samples = []
    with open(list_file, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                relpath, pid_text = fields
                pid = int(pid_text)
                camid = int(os.path.basename(relpath).split("_")[2]) - 1
            except (ValueError, IndexError):
                raise DataError(
                    f"{list_file}:{lineno}: expected 'relative/PPPP_SSS_CC_....jpg PID', "
                    f"got {line.strip()!r}"
                ) from None
            if not 0 <= camid < NUM_CAMERAS or pid < 0:
                raise DataError(
                    f"{list_file}:{lineno}: pid {pid} or camera {camid + 1} out of range"
                )
            samples.append(Sample(str(image_dir / relpath), pid, camid))
    return samples


def parse(folder: Path) -> Dataset:
    """Parse MSMT17 (V2 preferred when both versions are present) from ``<root>/msmt17``."""
    version = next((v for v in VERSIONS if (folder / v).is_dir()), None)
    if version is None:
        raise MissingInputError(
            f"msmt17: expected {folder / 'MSMT17_V1'} or {folder / 'MSMT17_V2'}",
            hint=SPEC.how_to_obtain(folder.parent),
        )
    base = folder / version
    train_dir, test_dir = VERSIONS[version]
    subsets = {}
    for subset, list_name in LISTS.items():
        list_file = base / list_name
        if not list_file.is_file():
            raise MissingInputError(f"msmt17: missing list file {list_file}")
        image_dir = base / (train_dir if subset == "train" else test_dir)
        subsets[subset] = read_list(list_file, image_dir)
    return make_dataset("msmt17", base, subsets, camera_base=1)  # file names count from 1


SPEC = DatasetSpec(
    name="msmt17",
    folder="msmt17",
    description="MSMT17 (V1 or V2): 4101 ids, 15 cameras, 126441 images",
    obtain="on request from its authors (no public link): reidkit datasets download msmt17 "
    "--archive MSMT17_V1.zip --root {root} (or extract it into {root}/msmt17/)",
    parse=parse,
)
