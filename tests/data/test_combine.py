from __future__ import annotations

import csv
import logging

import pytest
from helpers import MARKET_SPEC, duke_name, write_market_style

from reidkit.data import load_dataset
from reidkit.data.combine import combine_datasets
from reidkit.errors import UsageError

DUKE = {
    "bounding_box_train": [(4, 1), (4, 2), (8, 8)],
    "query": [(6, 1)],
    "bounding_box_test": [(6, 2), (6, 3)],
}


@pytest.fixture
def two(market_tree):
    write_market_style(market_tree.root / "dukemtmc-reid" / "DukeMTMC-reID", DUKE, name=duke_name)
    return load_dataset("market1501", market_tree.root), load_dataset(
        "dukemtmcreid", market_tree.root
    )


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_train_pids_and_cameras_offset_per_source(two, tmp_path):
    market, duke = two
    out = tmp_path / "combined.csv"
    info = combine_datasets([market, duke], out)
    written = rows(out)
    train = [r for r in written if r["subset"] == "train"]
    market_ids = len({p for p, _ in MARKET_SPEC["bounding_box_train"]})
    duke_train = [r for r in train if r["dataset"] == "dukemtmcreid"]
    assert sorted({int(r["pid"]) for r in duke_train}) == [market_ids, market_ids + 1]
    assert min(int(r["camid"]) for r in duke_train) == 6  # after Market's 6 cameras
    assert info["train_ids"] == market_ids + 2
    # query and gallery keep their own pids and cameras, tagged by source
    duke_query = [r for r in written if r["subset"] == "query" and r["dataset"] == "dukemtmcreid"]
    assert [(r["pid"], r["camid"]) for r in duke_query] == [("6", "0")]
    # junk rows kept with pid -1
    assert sum(r["pid"] == "-1" for r in written) == 2
    assert info["sources"]["dukemtmcreid"] == {"train": 3, "query": 1, "gallery": 2}


def test_combined_manifest_reads_back(two, tmp_path):
    out = tmp_path / "sub" / "combined.csv"
    combine_datasets(list(two), out)
    ds = load_dataset(str(out))
    assert ds.sources == ["market1501", "dukemtmcreid"]
    assert ds.summary()["subsets"]["train"] == {
        "ids": two[0].num_train_pids + two[1].num_train_pids,
        "images": len(two[0].train) + len(two[1].train),
        "cameras": len({s.camid for s in two[0].train}) + len({s.camid for s in two[1].train}),
    }
    assert ds.summary()["junk_images"] == 2
    assert all(not r["path"].startswith("/") for r in rows(out))


def test_combineall_folds_query_gallery_without_junk_or_distractors(two, tmp_path, caplog):
    market, _ = two
    out = tmp_path / "all.csv"
    with caplog.at_level(logging.WARNING, logger="reidkit"):
        combine_datasets([market], out, combineall=True)
    train = [r for r in rows(out) if r["subset"] == "train"]
    folded = [r for r in train if int(r["pid"]) >= market.num_train_pids]
    assert len(folded) == 3 + 5  # 3 query + 5 gallery images of pids 3 and 5
    assert sorted({int(r["pid"]) for r in folded}) == [3, 4]
    assert "meaningless" in caplog.text


def test_same_dataset_twice_refused(two, tmp_path):
    with pytest.raises(UsageError, match="more than once"):
        combine_datasets([two[0], two[0]], tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
