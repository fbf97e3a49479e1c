from __future__ import annotations

import pytest
from helpers import write_image

from reidkit.data import load_dataset
from reidkit.errors import DataError, MissingInputError

LISTS = {
    "train": [
        ("0000/0000_000_01_0303morning_0015_0.jpg", 0),
        ("0000/0000_001_05_0303morning_0016_0.jpg", 0),
        ("0007/0007_002_15_0303noon_0100_1.jpg", 7),
    ],
    "val": [("0007/0007_003_14_0303noon_0101_1.jpg", 7)],
    "query": [("0003/0003_000_02_0303afternoon_0200_0.jpg", 3)],
    "gallery": [
        ("0003/0003_001_09_0303afternoon_0201_0.jpg", 3),
        ("0004/0004_000_10_0303afternoon_0300_0.jpg", 4),
    ],
}


def write_msmt(root, version="MSMT17_V1", dirs=("train", "test")):
    base = root / "msmt17" / version
    for subset, rows in LISTS.items():
        folder = base / (dirs[0] if subset in ("train", "val") else dirs[1])
        for rel, _ in rows:
            write_image(folder / rel)
        (base / f"list_{subset}.txt").write_text("".join(f"{rel} {pid}\n" for rel, pid in rows))
    return base


@pytest.mark.parametrize(
    "version,dirs",
    [("MSMT17_V1", ("train", "test")), ("MSMT17_V2", ("mask_train_v2", "mask_test_v2"))],
)
def test_lists_parsed_with_camera_from_third_field(tmp_path, version, dirs):
    base = write_msmt(tmp_path, version, dirs)
    ds = load_dataset("msmt17", tmp_path)
    assert ds.root == base
    assert [(s.pid, s.camid) for s in ds.train] == [(0, 0), (0, 4), (1, 14)]  # pids 0, 7 relabelled
    assert ds.pid_map == {(0, 0): 0, (0, 7): 1}
    assert [(s.pid, s.camid) for s in ds.query] == [(3, 1)]
    assert [(s.pid, s.camid) for s in ds.gallery] == [(3, 8), (4, 9)]
    assert ds.train[0].path == str(base / dirs[0] / LISTS["train"][0][0])
    assert ds.gallery[0].path == str(base / dirs[1] / LISTS["gallery"][0][0])


def test_bad_list_line_names_file_and_line(tmp_path):
    base = write_msmt(tmp_path)
    (base / "list_query.txt").write_text("0003/0003_000_02_x_0200_0.jpg 3\nbroken-line\n")
    with pytest.raises(DataError, match=r"list_query.txt:2: "):
        load_dataset("msmt17", tmp_path)


def test_missing_version_folder(tmp_path):
    (tmp_path / "msmt17").mkdir()
    with pytest.raises(MissingInputError, match="MSMT17_V1"):
        load_dataset("msmt17", tmp_path)
