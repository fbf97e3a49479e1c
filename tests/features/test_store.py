from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import h5py
import numpy as np
import pytest

from reidkit.errors import DataError, MissingInputError
from reidkit.features.store import SCHEMA, read_features
from reidkit.features.writer import FeatureWriter, write_features


def rows(n, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, dim)).astype(np.float32),
        rng.integers(-1, 30, n),
        rng.integers(0, 6, n),
        [f"img/{i:05d}.jpg" for i in range(n)],
    )


def test_round_trip_with_every_dataset_and_attribute(tmp_path):
    feats, pids, camids, paths = rows(50)
    path = write_features(
        tmp_path / "q.h5",
        feats,
        pids,
        camids,
        paths=paths,
        dsetids=np.zeros(50, dtype=np.int64),
        attrs={"model": "resnet50", "config": {"lr": 0.1}, "flip": True, "image_size": [256, 128]},
    )
    fs = read_features(path)
    np.testing.assert_array_equal(fs.features, feats)
    np.testing.assert_array_equal(fs.pids, pids)
    np.testing.assert_array_equal(fs.camids, camids)
    assert fs.paths == paths and fs.dsetids.tolist() == [0] * 50
    assert fs.attrs["schema"] == SCHEMA and fs.attrs["complete"] is True
    assert fs.attrs["model"] == "resnet50" and fs.attrs["config"] == {"lr": 0.1}
    assert fs.attrs["image_size"] == [256, 128] and fs.attrs["flip"] is True
    assert "created" in fs.attrs and fs.attrs["reidkit_version"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.h5"]


def test_float16_storage_reads_back_as_float32(tmp_path):
    feats, pids, camids, _ = rows(10)
    fs = read_features(write_features(tmp_path / "h.h5", feats, pids, camids, storage="float16"))
    with h5py.File(tmp_path / "h.h5") as f:
        assert f["features"].dtype == np.float16 and f["features"].chunks is not None
    assert fs.features.dtype == np.float32
    np.testing.assert_allclose(fs.features, feats, atol=2e-3)


def test_foreign_file_with_only_the_required_datasets(tmp_path):
    feats, pids, camids, _ = rows(5)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["features"], f["pids"], f["camids"] = (
            feats.astype(np.float64),
            pids.astype(np.int32),
            camids,
        )
    fs = read_features(tmp_path / "other.h5")
    assert fs.features.dtype == np.float32 and fs.paths is None and fs.dim == 8


def test_writer_resumes_from_flushed_chunks(tmp_path):
    feats, pids, camids, paths = rows(100)
    attrs = {"provenance": {"checkpoint": "abc"}}
    first = FeatureWriter(tmp_path / "f.h5", 8, attrs=attrs, chunk_rows=16, with_paths=True)
    for s in range(0, 70, 10):
        first.append(feats[s : s + 10], pids[s : s + 10], camids[s : s + 10], paths[s : s + 10])
    del first  # the process "dies": 64 rows were flushed in 4 chunks, 6 were pending
    again = FeatureWriter(tmp_path / "f.h5", 8, attrs=attrs, chunk_rows=16, with_paths=True)
    assert again.resumed_rows == 64 and not (tmp_path / "f.h5").exists()
    again.append(feats[64:], pids[64:], camids[64:], paths[64:])
    fs = read_features(again.finish())
    np.testing.assert_array_equal(fs.features, feats)
    assert fs.paths == paths and not (tmp_path / "f.h5.partial").exists()


def test_partial_of_another_job_is_discarded(tmp_path):
    feats, pids, camids, _ = rows(40)
    w = FeatureWriter(tmp_path / "f.h5", 8, attrs={"provenance": {"v": 1}}, chunk_rows=8)
    w.append(feats, pids, camids)
    other = FeatureWriter(tmp_path / "f.h5", 8, attrs={"provenance": {"v": 2}}, chunk_rows=8)
    assert other.resumed_rows == 0
    other.append(feats[:3], pids[:3], camids[:3])
    assert len(read_features(other.finish())) == 3


def test_sigkill_mid_write_then_resume_gives_identical_file(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        from reidkit.features.writer import FeatureWriter
        rng = np.random.default_rng(0)
        feats = rng.normal(size=(400, 16)).astype(np.float32)
        w = FeatureWriter({str(tmp_path / "k.h5")!r}, 16, attrs={{"provenance": {{"x": 1}}}},
                          chunk_rows=20)
        start = w.resumed_rows
        print(start, flush=True)
        for s in range(start, 400, 10):
            w.append(feats[s:s + 10], np.arange(s, s + 10), np.zeros(10))
            if sys.argv[1] == "slow":
                time.sleep(0.01)
        w.finish()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "slow"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "0"
    partial = tmp_path / "k.h5.partial"
    while len(list(partial.glob("chunk-*.npz"))) < 5:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "k.h5").exists()
    done = subprocess.run([sys.executable, "-c", script, "fast"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) >= 100
    fs = read_features(tmp_path / "k.h5")
    expected = np.random.default_rng(0).normal(size=(400, 16)).astype(np.float32)
    np.testing.assert_array_equal(fs.features, expected)
    assert fs.pids.tolist() == list(range(400))


def h5(tmp_path, **datasets):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
    return path


@pytest.mark.parametrize(
    "datasets,message",
    [
        ({"pids": np.zeros(3), "camids": np.zeros(3)}, "no /features dataset"),
        ({"features": np.zeros((3, 4)), "camids": np.zeros(3)}, "no /pids dataset"),
        (
            {"features": np.zeros((3, 4)), "pids": np.zeros(2), "camids": np.zeros(3)},
            "/pids has 2 rows but /features has 3",
        ),
        ({"features": np.zeros(3), "pids": np.zeros(3), "camids": np.zeros(3)}, "must be 2-D"),
        (
            {"features": np.zeros((0, 4)), "pids": np.zeros(0), "camids": np.zeros(0)},
            "holds no rows",
        ),
    ],
)
def test_invalid_files_are_data_errors(tmp_path, datasets, message):
    with pytest.raises(DataError, match=message) as err:
        read_features(h5(tmp_path, **datasets))
    assert str(tmp_path / "bad.h5") in err.value.message and err.value.exit_code == 1


def test_non_finite_rows_are_counted_with_the_first_index(tmp_path):
    feats = np.zeros((10, 4), dtype=np.float32)
    feats[3, 1], feats[7, 0], feats[7, 2] = np.nan, np.inf, np.nan
    path = h5(tmp_path, features=feats, pids=np.zeros(10), camids=np.zeros(10))
    with pytest.raises(
        DataError, match=r"2 feature row\(s\) contain NaN or inf, the first at index 3"
    ):
        read_features(path)


def test_finite_rows_whose_sum_overflows_are_read(tmp_path):
    """The reader looks for non-finite rows when the sum of all values is not finite: finite
    values large enough to overflow it are no error, and -inf among them is found."""
    feats = np.full((6, 4), 3e38, dtype=np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(feats.sum())
    path = h5(tmp_path, features=feats, pids=np.zeros(6), camids=np.zeros(6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning reaches the user
        assert np.array_equal(read_features(path).features, feats)
    feats[5, 3] = -np.inf
    path = h5(tmp_path, features=feats, pids=np.zeros(6), camids=np.zeros(6))
    with pytest.raises(
        DataError, match=r"1 feature row\(s\) contain NaN or inf, the first at index 5"
    ):
        read_features(path)


@pytest.mark.parametrize("stored", ["float32", "float16"])
def test_spare_columns_hold_the_same_rows_in_a_wider_array(tmp_path, stored):
    feats = np.random.default_rng(0).standard_normal((7, 5)).astype(stored)
    path = h5(tmp_path, features=feats, pids=np.arange(7), camids=np.zeros(7))
    plain, wide = read_features(path), read_features(path, spare_columns=2)
    assert wide.features.dtype == np.float32 and wide.features.shape == (7, 5)
    assert np.array_equal(wide.features, plain.features)
    assert np.array_equal(plain.features, feats.astype(np.float32))
    assert wide.features.base.shape == (7, 7) and wide.features.base.flags.c_contiguous


def test_incomplete_missing_and_not_hdf5(tmp_path):
    path = h5(tmp_path, features=np.zeros((2, 2)), pids=np.zeros(2), camids=np.zeros(2))
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(DataError, match="marked incomplete"):
        read_features(path)
    assert len(read_features(path, allow_incomplete=True)) == 2
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        read_features(tmp_path / "text.h5")
    (tmp_path / "gone.h5.partial").mkdir()
    with pytest.raises(MissingInputError, match="feature file not found") as err:
        read_features(tmp_path / "gone.h5")
    assert "interrupted" in err.value.hint


@pytest.mark.parametrize(
    ("dim", "storage", "rows"), [(512, "float32", 512), (2048, "float32", 128),
                                 (2048, "float16", 256), (300000, "float32", 1)]
)  # fmt: skip
def test_chunks_are_about_one_mebibyte(tmp_path, dim, storage, rows):
    """HDF5's default chunk cache holds 1 MiB: larger chunks are read again for every
    slice. Chunks are whole rows, about 1 MiB (one row when a row is larger)."""
    n = 1000 if dim < 300000 else 3
    feats = np.ones((n, dim), dtype=np.float32)
    write_features(tmp_path / "c.h5", feats, np.arange(n), np.zeros(n), storage=storage)
    with h5py.File(tmp_path / "c.h5") as f:
        assert f["features"].chunks == (min(rows, n), dim)


def test_a_schema_it_does_not_know_is_refused(tmp_path):
    feats, pids, camids, _ = rows(5)
    path = write_features(tmp_path / "new.h5", feats, pids, camids)
    with h5py.File(path, "a") as f:
        f.attrs["schema"] = "reidkit.features/2"
    with pytest.raises(DataError) as err:
        read_features(path)
    assert err.value.message == (
        f"{path}: feature file schema 'reidkit.features/2' is not one this reidkit reads "
        "(reidkit.features/1)"
    )
