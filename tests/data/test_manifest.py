from __future__ import annotations

import pytest

from reidkit.data import load_dataset
from reidkit.data.manifest import read_manifest, write_manifest
from reidkit.errors import UsageError


def test_rows_parsed_relative_to_manifest(tmp_path):
    manifest = tmp_path / "sets" / "mine.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        "path,pid,camid,subset\n"
        "# a comment\n"
        "imgs/a.jpg,12,0,train\n"
        "imgs/b.jpg,12,1,train\n"
        "\n"
        "imgs/c.jpg,5,0,train\n"
        "imgs/q.jpg,40,0,query\n"
        "imgs/g.jpg,40,1,gallery\n"
        "imgs/j.jpg,-1,1,gallery\n"
    )
    ds = load_dataset(str(manifest))
    assert ds.name == "mine" and ds.sources == ["mine"]
    assert [(s.pid, s.camid) for s in ds.train] == [(1, 0), (1, 1), (0, 0)]
    assert ds.train[0].path == str(tmp_path / "sets" / "imgs" / "a.jpg")
    assert [s.pid for s in ds.gallery] == [40] and len(ds.junk["gallery"]) == 1


def test_dataset_column_gives_dsetids_and_separate_identities(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("a.jpg,1,0,train,alpha\nb.jpg,1,0,train,beta\nc.jpg,2,0,train,alpha\n")
    ds = read_manifest(manifest)
    assert ds.sources == ["alpha", "beta"]
    assert [(s.pid, s.dsetid) for s in ds.train] == [(0, 0), (2, 1), (1, 0)]
    assert ds.summary()["subsets"]["train"]["ids"] == 3


@pytest.mark.parametrize(
    "row,message",
    [
        ("a.jpg,1,0", "expected 4 or 5 columns, found 3"),
        ("a.jpg,x,0,train", "pid 'x' is not an integer"),
        ("a.jpg,1,cam,train", "camid 'cam' is not an integer"),
        ("a.jpg,-3,0,train", "pid -3 is negative"),
        ("a.jpg,1,-1,query", "camid -1 is negative"),
        ("a.jpg,1,0,test", "subset 'test' is not one of train, query, gallery"),
        (",1,0,train", "empty path"),
    ],
)
def test_bad_row_names_file_and_line(tmp_path, row, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,pid,camid,subset\nok.jpg,1,0,train\n{row}\n")
    with pytest.raises(UsageError) as err:
        read_manifest(manifest)
    assert err.value.message.startswith(f"{manifest}:3: {message}")
    assert err.value.exit_code == 2


def test_empty_and_binary_manifests(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("path,pid,camid,subset\n")
    with pytest.raises(UsageError, match="no rows"):
        read_manifest(empty)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UsageError, match="not a CSV text file"):
        read_manifest(binary)


def test_write_then_read_round_trip(tmp_path):
    rows = [
        (str(tmp_path / "x" / "a.jpg"), 3, 1, "train", "s"),
        (str(tmp_path / "b.jpg"), 4, 0, "query", "s"),
    ]
    out = tmp_path / "out" / "m.csv"
    assert write_manifest(out, rows) == 2
    assert out.read_text().splitlines()[1] == "../x/a.jpg,3,1,train,s"
    ds = read_manifest(out)
    assert ds.train[0].path == str(tmp_path / "out" / ".." / "x" / "a.jpg")
    assert [(s.pid, s.camid) for s in ds.query] == [(4, 0)]
