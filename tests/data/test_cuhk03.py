"""CUHK03 on tiny but structurally real files: a MATLAB v7.3 (HDF5) cuhk-03.mat with object
references laid out as the release's, and new-protocol configs written by scipy.io.savemat."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from reidkit.data.layouts import cuhk03, cuhk03_release
from reidkit.errors import DataError, MissingInputError, UnknownNameError, UsageError

IDS_PER_PAIR = (3, 2, 4, 2, 3)
OFFSETS = (0, 3, 5, 9, 11)  # identities in earlier pairs: global pid = offset + pid
HEIGHT, WIDTH = 6, 4  # not square, so a wrong transpose shows
# (kind, pair, pid, row) of missing images; detected pair 5 identity 3 has none at all
MISSING = {("labeled", 3, 1, 4), *(("detected", 1, 2, row) for row in (7, 8, 9))} | {
    ("detected", 5, 3, row) for row in range(10)
}
# classic test set i: three (pair, pid) identities; odd sets are stored transposed
TEST_SETS = [{(i % 5 + 1, 1), ((i + 1) % 5 + 1, 2), ((i + 2) % 5 + 1, 1)} for i in range(20)]
NEW_TEST_PAIRS = (4, 5)  # the new-protocol configs put pairs 4 and 5 in test


def pixels(kind: str, pair: int, pid: int, row: int) -> np.ndarray:
    """A distinct (H, W, 3) image: red encodes the position, green the identity, blue the row."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    ident = (0 if kind == "labeled" else 100) + 10 * pair + pid
    return np.stack(
        [y * WIDTH + x, np.full_like(y, ident), np.full_like(y, 20 * row)], axis=-1
    ).astype(np.uint8)


def present(kind: str) -> list[tuple[int, int, int]]:
    """(pair, pid, row) of the images of ``kind`` that exist, in extraction order."""
    return [
        (pair, pid, row)
        for pair, n in enumerate(IDS_PER_PAIR, 1)
        for pid in range(1, n + 1)
        for row in range(10)
        if (kind, pair, pid, row) not in MISSING
    ]


def write_release(path: Path, keys=cuhk03_release.MAT_KEYS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    counter = itertools.count()
    with h5py.File(path, "w") as f:
        store = f.create_group("#refs#")  # where MATLAB keeps referenced arrays

        def put(data, dtype=None):
            return store.create_dataset(str(next(counter)), data=data, dtype=dtype).ref

        for kind in ("labeled", "detected"):
            pairs = np.empty((1, 5), dtype=object)
            for pair, n in enumerate(IDS_PER_PAIR, 1):
                cell = np.empty((10, n), dtype=object)
                for pid, row in itertools.product(range(1, n + 1), range(10)):
                    if (kind, pair, pid, row) in MISSING:
                        image = np.zeros(2, dtype=np.uint64)  # MATLAB's empty placeholder
                    else:
                        image = pixels(kind, pair, pid, row).transpose(2, 1, 0)  # (3, W, H)
                    cell[row, pid - 1] = put(image)
                pairs[0, pair - 1] = put(cell, h5py.ref_dtype)
            if kind in keys:
                f.create_dataset(kind, data=pairs, dtype=h5py.ref_dtype)
        tests = np.empty((1, 20), dtype=object)
        for i, test in enumerate(TEST_SETS):
            table = np.array(sorted(test), dtype=np.float64).T  # (2, 3): pairs, then pids
            tests[0, i] = put(table.T if i % 2 else table)
        if "testsets" in keys:
            f.create_dataset("testsets", data=tests, dtype=h5py.ref_dtype)


def new_protocol_rows(kind: str) -> dict[str, list[tuple[str, int, int]]]:
    """The (name, pid, camid 0-based) rows of each new-protocol subset."""
    rows: dict[str, list] = {"train": [], "query": [], "gallery": []}
    for pair, pid, row in present(kind):
        view = 1 if row < 5 else 2
        subset = "train"
        if pair in NEW_TEST_PAIRS:
            subset = "query" if row in (0, 5) else "gallery"
        name = f"{pair}_{pid:03d}_{view}_{row + 1:02d}.png"
        rows[subset].append((name, OFFSETS[pair - 1] + pid, view - 1))
    return rows


def write_config(path: Path, kind: str) -> None:
    names = [
        f"{pair}_{pid:03d}_{1 if row < 5 else 2}_{row + 1:02d}.png"
        for pair, pid, row in present(kind)
    ]
    labels = [OFFSETS[pair - 1] + pid for pair, pid, _ in present(kind)]
    cams = [1 if row < 5 else 2 for _, _, row in present(kind)]  # 1-based, as MATLAB's
    rows = new_protocol_rows(kind)
    index = {name: i + 1 for i, name in enumerate(names)}  # 1-based
    mat = {
        "filelist": np.array(names, dtype=object).reshape(-1, 1),
        "labels": np.array(labels, dtype=np.float64).reshape(-1, 1),
        "camId": np.array(cams, dtype=np.float64).reshape(-1, 1),
    }
    for subset, subset_rows in rows.items():
        idx = [index[name] for name, _, _ in subset_rows]
        mat[f"{subset}_idx"] = np.array(idx, dtype=np.float64).reshape(-1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, mat)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """An unprepared dataset folder, written once; tests get copies."""
    folder = tmp_path_factory.mktemp("pristine") / "cuhk03"
    write_release(folder / cuhk03_release.RELEASE_MAT)
    write_config(folder / "cuhk03_new_protocol_config_labeled.mat", "labeled")
    write_config(folder / "cuhk03_release" / "cuhk03_new_protocol_config_detected.mat", "detected")
    return folder


@pytest.fixture
def folder(pristine, tmp_path) -> Path:
    target = tmp_path / "data" / "cuhk03"
    shutil.copytree(pristine, target)
    return target


@pytest.fixture(scope="module")
def prepared(pristine, tmp_path_factory) -> Path:
    """A prepared dataset folder shared by the tests that only read it."""
    target = tmp_path_factory.mktemp("prepared") / "data" / "cuhk03"
    shutil.copytree(pristine, target)
    cuhk03_release.prepare(target)
    return target


def without_configs(folder: Path) -> Path:
    (folder / "cuhk03_new_protocol_config_labeled.mat").unlink()
    (folder / "cuhk03_release" / "cuhk03_new_protocol_config_detected.mat").unlink()
    return folder


def expected_names(kind: str) -> list[str]:
    return sorted(
        f"{pair}_{pid:03d}_{1 if row < 5 else 2}_{row + 1:02d}.png"
        for pair, pid, row in present(kind)
    )


def test_prepare_extracts_every_image_with_its_pixels(folder):
    calls = []

    def record(done, total, note=""):
        calls.append((done, total, note))

    info = cuhk03_release.prepare(folder, record)
    assert info["format"] == cuhk03_release.FORMAT_VERSION
    assert info["classic_splits"] == 20
    assert info["kinds"] == {
        "labeled": {"images": 139, "ids": 14, "missing_images": 1},
        "detected": {"images": 127, "ids": 13, "missing_images": 13},
    }
    assert json.loads((folder / "prepared.json").read_text()) == info
    for kind in ("labeled", "detected"):
        assert sorted(os.listdir(folder / f"images_{kind}")) == expected_names(kind)
    assert "3_001_1_05.png" not in os.listdir(folder / "images_labeled")  # the missing one
    assert "3_001_1_05.png" in os.listdir(folder / "images_detected")
    assert not any(n.startswith("5_003_") for n in os.listdir(folder / "images_detected"))
    # the transpose: a (3, W, H) array in the file comes out as an H x W RGB image
    image = np.asarray(Image.open(folder / "images_labeled" / "3_004_2_07.png"))
    assert image.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(image, pixels("labeled", 3, 4, 6))
    image = np.asarray(Image.open(folder / "images_detected" / "1_002_1_01.png"))
    np.testing.assert_array_equal(image, pixels("detected", 1, 2, 0))
    assert image[5, 3].tolist() == [23, 112, 0]
    # progress counts every reference, one identity at a time, ending at the total
    assert calls[-1] == (280, 280, "detected")
    assert [c[0] for c in calls] == list(range(10, 281, 10))
    assert not (folder / cuhk03_release.STAGING).exists()


def test_classic_splits_hold_the_test_sets(prepared):
    for split in (0, 7):
        ds = cuhk03.parse(prepared, kind="labeled", protocol="classic", split=split)
        assert ds.name == ("cuhk03-classic-labeled" if split == 0 else "cuhk03-classic-labeled@7")
        test_ids = {OFFSETS[pair - 1] + pid for pair, pid in TEST_SETS[split]}
        assert {s.pid for s in ds.query} == test_ids
        assert ds.query == ds.gallery  # single-gallery-shot: test images on both sides
        train_ids = set(range(1, 15)) - test_ids
        assert set(ds.pid_map) == {(0, pid) for pid in train_ids}
        assert not test_ids & {pid for _, pid in ds.pid_map}
        test_images = [p for p in present("labeled") if (p[0], p[1]) in TEST_SETS[split]]
        assert len(ds.query) == len(test_images)
        assert len(ds.train) == 139 - len(test_images)
        for s in ds.query:
            pair, pid, view, _ = map(int, Path(s.path).stem.split("_"))
            assert (s.pid, s.camid) == (OFFSETS[pair - 1] + pid, 2 * (pair - 1) + view - 1)
    # split 7 tests (3, 1), (4, 2), (5, 1): identity (4, 1), global pid 10, trains
    by_name = {Path(s.path).name: s for s in ds.train}
    assert ds.pid_map[(0, 10)] == by_name["4_001_2_06.png"].pid == 8  # relabelled 0..10
    assert by_name["4_001_2_06.png"].camid == 7
    assert {s.camid for s in ds.train + ds.query} == set(range(10))
    assert ds.root == prepared
    assert ds.query[0] == (str(prepared / "images_labeled" / "3_001_1_01.png"), 6, 4, 0)


def test_classic_split_file_lists_relative_entries(prepared):
    splits = json.loads((prepared / "splits_classic_detected.json").read_text())
    assert len(splits) == 20
    first = splits[0]
    assert sorted(first) == ["gallery", "query", "train"]
    # split 0 tests (1, 1), (2, 2), (3, 1); detected identity (1, 2) lacks images 8-10
    assert ["images_detected/1_001_2_06.png", 1, 1] in first["query"]
    assert ["images_detected/2_002_1_03.png", 5, 2] in first["gallery"]
    assert ["images_detected/1_002_2_07.png", 2, 1] in first["train"]
    assert len(first["query"]) == 30
    assert len(first["train"]) == 127 - 30


def test_new_protocol_from_the_config_files(prepared):
    ds = cuhk03.parse(prepared)
    assert ds.name == "cuhk03-labeled"
    rows = new_protocol_rows("labeled")
    for subset in ("query", "gallery"):
        got = [(Path(s.path).name, s.pid, s.camid) for s in ds.subset(subset)]
        assert got == rows[subset]
    assert len(ds.query) == 2 * 5  # five test identities, one image per view
    assert len(ds.gallery) == 8 * 5
    assert set(ds.pid_map) == {(0, pid) for pid in range(1, 10)}
    assert len(ds.train) == 139 - 50
    assert {s.camid for s in ds.query} == {0, 1}  # camId 1..2 in the file, made 0-based
    # the detected config sits in cuhk03_release/, and its set lacks identity 14's images
    detected = cuhk03.parse(prepared, kind="detected")
    assert detected.name == "cuhk03-detected"
    assert {s.pid for s in detected.query} == {10, 11, 12, 13}
    assert detected.gallery[0].path == str(prepared / "images_detected" / "4_001_1_02.png")


def test_split_files_are_relative_so_the_folder_can_move(folder, tmp_path):
    cuhk03_release.prepare(folder)
    files = sorted(p.name for p in folder.glob("splits_*.json"))
    assert files == [
        "splits_classic_detected.json",
        "splits_classic_labeled.json",
        "splits_new_detected.json",
        "splits_new_labeled.json",
    ]
    for name in files:
        text = (folder / name).read_text()
        assert str(tmp_path) not in text
        for split in json.loads(text):
            for rows in split.values():
                assert all(not os.path.isabs(r[0]) and r[0].startswith("images_") for r in rows)
    moved = tmp_path / "elsewhere" / "moved-data"
    moved.parent.mkdir()
    shutil.move(tmp_path / "data", moved)
    (moved / "cuhk03" / cuhk03_release.RELEASE_MAT).unlink()  # no extraction possible: none needed
    ds = cuhk03.parse(moved / "cuhk03", kind="detected", protocol="classic", split=3)
    assert ds.root == moved / "cuhk03"
    assert all(s.path.startswith(str(moved / "cuhk03" / "images_detected")) for s in ds.train)
    assert len(ds.train) + len(ds.query) == 127


def test_second_prepare_does_no_work(folder, monkeypatch):
    info = cuhk03_release.prepare(folder)
    marker = folder / "prepared.json"
    mtime = marker.stat().st_mtime_ns

    def no_writing(image, path):
        raise AssertionError(f"wrote {path}")

    monkeypatch.setattr(cuhk03_release, "_save_png", no_writing)
    assert cuhk03_release.prepare(folder) == info
    assert len(cuhk03.parse(folder, protocol="classic").train) > 0
    assert marker.stat().st_mtime_ns == mtime


def test_interrupted_extraction_leaves_nothing_that_looks_prepared(folder, monkeypatch):
    real = cuhk03_release._save_png
    written = []

    def failing(image, path):
        if len(written) == 50:
            raise KeyboardInterrupt
        written.append(path)
        real(image, path)

    monkeypatch.setattr(cuhk03_release, "_save_png", failing)
    with pytest.raises(KeyboardInterrupt):
        cuhk03_release.prepare(folder)
    assert not (folder / "prepared.json").exists()
    assert not (folder / "images_labeled").exists()
    assert not list(folder.glob("splits_*.json"))
    assert not (folder / cuhk03_release.STAGING).exists()
    assert written[0].parent == folder / cuhk03_release.STAGING / "images_labeled"
    monkeypatch.setattr(cuhk03_release, "_save_png", real)
    assert cuhk03_release.prepare(folder)["kinds"]["labeled"]["images"] == 139
    assert len(os.listdir(folder / "images_labeled")) == 139


def test_interrupted_install_is_prepared_again(folder, monkeypatch):
    real = cuhk03_release.replace_folder
    moved = []

    def failing(staging, final):
        if moved:
            raise OSError("disk gone")
        moved.append(final)
        real(staging, final)

    monkeypatch.setattr(cuhk03_release, "replace_folder", failing)
    with pytest.raises(OSError, match="disk gone"):
        cuhk03_release.prepare(folder)
    assert moved == [folder / "images_detected"]  # one folder is in place, but no marker
    assert not (folder / "prepared.json").exists()
    monkeypatch.setattr(cuhk03_release, "replace_folder", real)
    ds = cuhk03.parse(folder, kind="labeled", protocol="classic", split=19)
    assert len(ds.train) + len(ds.query) == 139
    assert (folder / "prepared.json").is_file()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"kind": "sketch"}, "unknown kind 'sketch'; expected one of labeled, detected"),
        ({"protocol": "old"}, "unknown protocol 'old'; expected one of new, classic"),
        (
            {"protocol": "classic", "split": 20},
            "no split 20 in the classic protocol; expected 0..19",
        ),
        (
            {"protocol": "classic", "split": -1},
            "no split -1 in the classic protocol; expected 0..19",
        ),
        ({"protocol": "new", "split": 1}, "no split 1 in the new protocol; expected 0"),
    ],
)
def test_bad_choices_are_usage_errors(tmp_path, kwargs, message):
    with pytest.raises(UsageError) as info:
        cuhk03.parse(tmp_path / "cuhk03", **kwargs)
    assert info.value.message == f"cuhk03: {message}"
    assert info.value.exit_code == 2


def test_missing_release_names_the_file_and_the_download_command(tmp_path):
    folder = tmp_path / "cuhk03"
    folder.mkdir()
    for call in (lambda: cuhk03.parse(folder), lambda: cuhk03_release.prepare(folder)):
        with pytest.raises(MissingInputError) as info:
            call()
        assert info.value.message == f"cuhk03: expected {folder / 'cuhk03_release/cuhk-03.mat'}"
        assert (
            f"reidkit datasets download cuhk03 --archive cuhk03_release.zip --root {tmp_path}"
            in info.value.hint
        )
    assert not (folder / "prepared.json").exists()


def test_missing_new_protocol_config_fails_before_preparing(folder):
    without_configs(folder)
    with pytest.raises(MissingInputError) as info:
        cuhk03.parse(folder, kind="detected")
    assert info.value.message == (
        f"cuhk03: the new protocol needs {folder / 'cuhk03_new_protocol_config_detected.mat'}"
    )
    assert "cuhk03-classic-detected" in info.value.hint
    assert not (folder / "prepared.json").exists()
    # the classic protocol needs no config
    assert cuhk03.parse(folder, kind="detected", protocol="classic").name == (
        "cuhk03-classic-detected"
    )
    assert not (folder / "splits_new_detected.json").exists()
    with pytest.raises(MissingInputError, match=r"cuhk03_new_protocol_config_labeled\.mat"):
        cuhk03.parse(folder)


def test_config_added_after_preparation(folder):
    without_configs(folder)
    cuhk03_release.prepare(folder)
    write_config(folder / "cuhk03_new_protocol_config_labeled.mat", "labeled")
    ds = cuhk03.parse(folder)
    assert (folder / "splits_new_labeled.json").is_file()
    assert [Path(s.path).name for s in ds.query[:2]] == ["4_001_1_01.png", "4_001_2_06.png"]


def test_image_missing_on_disk_is_a_data_error(folder):
    cuhk03_release.prepare(folder)
    (folder / "images_labeled" / "4_002_1_01.png").unlink()
    with pytest.raises(DataError) as info:
        cuhk03.parse(folder, protocol="classic")
    assert info.value.message == (
        f"cuhk03: {folder / 'splits_classic_labeled.json'} lists "
        f"{folder / 'images_labeled' / '4_002_1_01.png'}, which does not exist (1 missing images)"
    )
    assert "prepared.json" in info.value.hint


def test_bad_config_is_a_data_error(folder):
    without_configs(folder)
    scipy.io.savemat(
        folder / "cuhk03_new_protocol_config_labeled.mat",
        {"filelist": np.array(["1_001_1_01.png"], dtype=object).reshape(-1, 1)},
    )
    with pytest.raises(DataError, match="lacks labels, camId, train_idx, query_idx, gallery_idx"):
        cuhk03.parse(folder)
    # read before the extraction, so it failed without extracting anything
    assert sorted(p.name for p in folder.iterdir()) == [
        "cuhk03_new_protocol_config_labeled.mat",
        "cuhk03_release",
    ]


def test_check_layout(tmp_path):
    folder = tmp_path / "cuhk03"
    with pytest.raises(DataError, match=r"cuhk-03\.mat is missing"):
        cuhk03_release.check_layout(folder)
    mat = folder / cuhk03_release.RELEASE_MAT
    mat.parent.mkdir(parents=True)
    mat.write_bytes(b"MATLAB 5.0 MAT-file, Platform: GLNXA64" + bytes(200))
    with pytest.raises(DataError) as info:
        cuhk03_release.check_layout(folder)
    assert info.value.message == f"cuhk03: {mat} is not a MATLAB v7.3 (HDF5) file"
    write_release(mat, keys=("labeled",))
    with pytest.raises(DataError, match=r"lacks detected, testsets$"):
        cuhk03_release.check_layout(folder)
    write_release(mat)
    assert cuhk03_release.check_layout(folder) is None


def test_specs_and_variants(prepared):
    assert [s.name for s in cuhk03.SPECS] == [
        "cuhk03-labeled",
        "cuhk03-detected",
        "cuhk03-classic-labeled",
        "cuhk03-classic-detected",
    ]
    assert {s.folder for s in cuhk03.SPECS} == {"cuhk03"}
    root = prepared.parent
    obtain = cuhk03.SPECS[0].how_to_obtain(root)
    assert "request it from its authors" in obtain
    assert f"--archive cuhk03_release.zip --root {root};" in obtain
    assert f"cuhk03_new_protocol_config_detected.mat in {root}/cuhk03/" in obtain
    spec = cuhk03.SPECS[3]
    ds = spec.parse(spec.path(root))
    assert ds.name == "cuhk03-classic-detected"
    assert len(ds.query) == 30
    ds = cuhk03.parse_variant(prepared, "cuhk03-classic-detected", split=4)
    assert ds.name == "cuhk03-classic-detected@4"
    assert {s.pid for s in ds.query} == {OFFSETS[p - 1] + k for p, k in TEST_SETS[4]}
    assert cuhk03.parse_variant(prepared, "cuhk03-labeled").name == "cuhk03-labeled"
    with pytest.raises(UnknownNameError, match="expected one of cuhk03-labeled, cuhk03-det"):
        cuhk03.parse_variant(prepared, "cuhk03")
    with pytest.raises(UsageError, match="no split 2 in the new protocol"):
        cuhk03.parse_variant(prepared, "cuhk03-detected", split=2)


# --------------------------------------------------------------------------- through the CLI


def test_install_from_the_release_archive_then_select_splits(cli, tmp_path):
    """datasets download --archive cuhk03_release.zip extracts, prepares and installs; the
    variants and NAME@N splits then parse under the data root."""
    import json
    import zipfile

    release = tmp_path / "src" / "cuhk03_release" / "cuhk-03.mat"
    write_release(release)
    archive = tmp_path / "cuhk03_release.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(release, "cuhk03_release/cuhk-03.mat")
    root = tmp_path / "data"
    code, out, err = cli("datasets", "download", "cuhk03", "--root", root, "--archive", archive)
    assert code == 0, err
    assert (root / "cuhk03" / "prepared.json").is_file()
    assert (root / "cuhk03" / ".reidkit-install.json").is_file()
    code, out, err = cli(
        "datasets", "summary", "cuhk03-classic-labeled@7", "--root", root, "--json"
    )
    assert code == 0, err
    splits = json.loads((root / "cuhk03" / "splits_classic_labeled.json").read_text())
    assert json.loads(out)["subsets"]["query"]["images"] == len(splits[7]["query"])
    from reidkit.data import load_dataset

    for split in (0, 7):
        dataset = load_dataset(f"cuhk03-classic-labeled@{split}", root)
        expected = sorted(str(root / "cuhk03" / row[0]) for row in splits[split]["query"])
        assert sorted(s.path for s in dataset.query) == expected
    assert {s.path for s in load_dataset("cuhk03-classic-labeled@0", root).query} != {
        s.path for s in load_dataset("cuhk03-classic-labeled@7", root).query
    }
    code, _, err = cli("datasets", "summary", "cuhk03-classic-labeled@20", "--root", root)
    assert code == 2 and "the split must be 0 to 19" in err
    code, _, err = cli("datasets", "summary", "market1501@1", "--root", root)
    assert code == 2 and "market1501 has one split" in err
    code, _, err = cli("datasets", "summary", "cuhk03-labeled", "--root", root)
    assert code == 2 and "cuhk03_new_protocol_config_labeled.mat" in err
