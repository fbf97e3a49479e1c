from __future__ import annotations

import pytest
from helpers import write_image

from reidkit.data import load_dataset
from reidkit.errors import MissingInputError


def test_generic_folder_with_alternative_names_and_png(tmp_path):
    folder = tmp_path / "mydata"
    write_image(folder / "train" / "0012_c1_a.png")
    write_image(folder / "train" / "0012_c2_b.jpg")
    write_image(folder / "train" / "0040_c2_c.jpg")
    write_image(folder / "query" / "0100_c1_q.jpg")
    write_image(folder / "gallery" / "0100_c2_g.jpg")
    write_image(folder / "gallery" / "no_camera.jpg")
    ds = load_dataset(str(folder))
    assert ds.name == "mydata"
    assert sorted((s.pid, s.camid) for s in ds.train) == [(0, 0), (0, 1), (1, 1)]
    assert [(s.pid, s.camid) for s in ds.query] == [(100, 0)]
    assert [(s.pid, s.camid) for s in ds.gallery] == [(100, 1)]
    assert len(ds.unparsed) == 1


def test_zero_based_cameras_detected(tmp_path):
    write_image(tmp_path / "d" / "query" / "0001_c0_x.jpg")
    write_image(tmp_path / "d" / "bounding_box_test" / "0001_c1_y.jpg")
    ds = load_dataset(str(tmp_path / "d"))
    assert [s.camid for s in ds.query] == [0]
    assert [s.camid for s in ds.gallery] == [1]


def test_train_only_folder_is_fine(tmp_path):
    write_image(tmp_path / "d" / "bounding_box_train" / "0001_c1_x.jpg")
    ds = load_dataset(str(tmp_path / "d"))
    assert len(ds.train) == 1 and ds.query == [] and ds.gallery == []


def test_folder_without_subsets(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="bounding_box_train") as err:
        load_dataset(str(tmp_path / "empty"))
    assert "manifest" in err.value.hint
