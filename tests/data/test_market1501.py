from __future__ import annotations

import logging
import shutil

import pytest
from helpers import MARKET_SPEC, write_market_style

from reidkit.data import load_dataset
from reidkit.errors import MissingInputError

SUBSET_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def expected_counts(items):
    clean = [(p, c) for p, c in items if p != -1]
    return {
        "ids": len({p for p, _ in clean}),
        "images": len(clean),
        "cameras": len({c for _, c in clean}),
    }


def test_counts_follow_the_files(market_tree):
    ds = load_dataset("market1501", market_tree.root)
    summary = ds.summary()
    for subset, folder in SUBSET_FOLDERS.items():
        assert summary["subsets"][subset] == expected_counts(MARKET_SPEC[folder]), subset
    assert summary["junk_images"] == sum(p == -1 for p, _ in MARKET_SPEC["bounding_box_test"])
    assert summary["unparsed_files"] == 2  # snapshot.jpg and the camera-7 file
    assert summary["dataset"] == "market1501"


def test_train_pids_relabelled_in_sorted_order_and_cameras_zero_based(market_tree):
    ds = load_dataset("market1501", market_tree.root)
    originals = sorted({p for p, _ in MARKET_SPEC["bounding_box_train"]})  # [2, 7, 10]
    assert ds.pid_map == {(0, pid): label for label, pid in enumerate(originals)}
    by_file = {s.path.rsplit("/", 1)[1]: s for s in ds.train}
    assert by_file["0007_c2s1_000101_01.jpg"].pid == originals.index(7)
    assert by_file["0007_c2s1_000101_01.jpg"].camid == 1
    assert {s.camid for s in ds.train} == {0, 1, 2, 3, 4, 5}
    assert sorted({s.pid for s in ds.train}) == [0, 1, 2]


def test_distractors_kept_junk_split_off(market_tree):
    ds = load_dataset("market1501", market_tree.root)
    assert sum(s.pid == 0 for s in ds.gallery) == 2
    assert all(s.pid != -1 for s in ds.gallery)
    assert [s.pid for s in ds.junk["gallery"]] == [-1, -1]
    assert ds.zero_is_distractor


def test_query_and_gallery_keep_original_pids(market_tree):
    ds = load_dataset("market1501", market_tree.root)
    assert sorted({s.pid for s in ds.query}) == [3, 5]


def test_stray_files_ignored_and_bad_names_warned(market_tree, caplog):
    with caplog.at_level(logging.WARNING, logger="reidkit"):
        ds = load_dataset("market1501", market_tree.root)
    assert not any("Thumbs.db" in p or "readme" in p for p in ds.unparsed)
    assert sorted(p.rsplit("/", 1)[1] for p in ds.unparsed) == [
        "0003_c7s1_000001_01.jpg",
        "snapshot.jpg",
    ]
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "2 image file(s)" in warning[0] and "snapshot.jpg" in warning[0]


def test_folders_directly_under_market1501(tmp_path):
    write_market_style(tmp_path / "market1501", MARKET_SPEC)
    ds = load_dataset("market1501", tmp_path)
    assert len(ds.train) == len(MARKET_SPEC["bounding_box_train"])
    assert ds.root == tmp_path / "market1501"


def test_missing_dataset_names_expected_path_and_how_to_get_it(tmp_path):
    with pytest.raises(MissingInputError) as err:
        load_dataset("market1501", tmp_path)
    assert str(tmp_path / "market1501") in err.value.message
    assert "Market-1501-v15.09.15.zip" in err.value.hint
    assert err.value.exit_code == 2


def test_missing_subset_folder_is_named(market_tree):
    shutil.rmtree(market_tree.base / "query")
    with pytest.raises(MissingInputError, match="query"):
        load_dataset("market1501", market_tree.root)
