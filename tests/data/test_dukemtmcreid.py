from __future__ import annotations

from helpers import duke_name, write_market_style

from reidkit.data import load_dataset

DUKE_SPEC = {
    "bounding_box_train": [(1, 1), (1, 8), (5, 2), (5, 3)],
    "query": [(6, 7)],
    "bounding_box_test": [(6, 8), (6, 1), (9, 2), (0, 4)],
}


def test_duke_naming_and_eight_cameras(tmp_path):
    write_market_style(tmp_path / "dukemtmc-reid" / "DukeMTMC-reID", DUKE_SPEC, name=duke_name)
    ds = load_dataset("dukemtmcreid", tmp_path)
    assert {s.camid for s in ds.train} == {0, 7, 1, 2}
    assert [(s.pid, s.camid) for s in ds.query] == [(6, 6)]
    assert sorted((s.pid, s.camid) for s in ds.gallery) == [(0, 3), (6, 0), (6, 7), (9, 1)]
    assert ds.summary()["subsets"]["train"] == {"ids": 2, "images": 4, "cameras": 4}
    assert ds.unparsed == []
    assert not ds.zero_is_distractor  # pid 0 is a real identity in DukeMTMC-reID


def test_camera_nine_is_out_of_range(tmp_path):
    spec = dict(DUKE_SPEC, query=[(6, 9)])
    write_market_style(tmp_path / "dukemtmc-reid" / "DukeMTMC-reID", spec, name=duke_name)
    ds = load_dataset("dukemtmcreid", tmp_path)
    assert ds.query == [] and len(ds.unparsed) == 1
