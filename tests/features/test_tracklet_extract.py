"""Tracklet extraction: one row per tracklet, its frames pooled before the head, chunked over
frames, resumable, locked and refused where it cannot be honoured."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest
import torch
from helpers import reidkit_env, torchrun_argv

from reidkit.data import load_dataset
from reidkit.data.clips import pick_frames
from reidkit.data.images import read_rgb
from reidkit.features.store import read_features
from reidkit.fileio import file_lock
from reidkit.models import create_model

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from reidkit.data.synth import generate

    root = tmp_path_factory.mktemp("video")
    generate(root, "video-tiny", seed=0, workers=2)
    return root


def extract_args(root, out, *extra, size=(64, 32)):
    return [
        "extract", "--model", "resnet18", "--seed", "0", "--dataset", "synthreid-video",
        "--root", root, "--height", size[0], "--width", size[1], "--device", "cpu",
        "--out", out, *extra,
    ]  # fmt: skip


def reference(tracklets, how="avg", flip=False, frames=None):
    """Each tracklet's embedding computed plainly: every frame decoded and normalised, the
    trunk's features of each (and of its mirror image), their mean (or maximum), the
    BNNeck: no batching, chunking or pooling code of reidkit's."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=1, image_size=(64, 32)).eval()
    rows = []
    with torch.no_grad():
        for t in tracklets:
            paths = t.paths if frames is None else [t.paths[i] for i in frames(t)]
            pixels = np.stack([np.asarray(read_rgb(p, (32, 64))) for p in paths]) / 255.0
            x = torch.tensor(((pixels - MEAN) / STD).transpose(0, 3, 1, 2), dtype=torch.float32)
            views = [x, torch.flip(x, dims=[3])] if flip else [x]
            f = torch.cat([model.features(v) for v in views])
            pooled = f.mean(0) if how == "avg" else f.amax(0)
            rows.append(model.bnneck(pooled[None])[0].numpy())
    return np.stack(rows)


@pytest.mark.parametrize(
    ("how", "flip", "batch"), [("avg", False, 5), ("max", True, 7), ("avg", False, 1000)]
)
def test_rows_pool_every_frame_whatever_the_batches(video, tmp_path, cli, how, flip, batch):
    extra = ["--temporal", how, "--batch-size", str(batch), "--subsets", "query", "--json"]
    code, out, err = cli(*extract_args(video, tmp_path, *extra, *(["--flip"] if flip else [])))
    assert code == 0, err
    ds = load_dataset("synthreid-video", video)
    got = read_features(tmp_path / "synthreid-video-query.h5")
    expected = reference(ds.query, how, flip)
    assert np.abs(got.features - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())
    assert got.frames.tolist() == [t.frames for t in ds.query]
    assert got.paths == [os.path.relpath(t.paths[0], ds.root) for t in ds.query]
    assert got.pids.tolist() == [t.pid for t in ds.query]
    assert got.camids.tolist() == [t.camid for t in ds.query]
    assert got.attrs["kind"] == "tracklet" and got.attrs["temporal"] == how
    assert got.attrs["sample"] == "all" and got.attrs["flip"] == flip
    result = json.loads(out)["files"][0]
    assert result["rows"] == len(ds.query) and result["skipped_frames"] == []


def test_evenly_sampled_frames(video, tmp_path, cli):
    extra = ["--sample", "evenly", "--seq-len", "3", "--subsets", "gallery"]
    assert cli(*extract_args(video, tmp_path, *extra))[0] == 0
    ds = load_dataset("synthreid-video", video)
    got = read_features(tmp_path / "synthreid-video-gallery.h5")
    expected = reference(ds.gallery, frames=lambda t: pick_frames(t.frames, 3, "evenly"))
    assert np.abs(got.features - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())
    assert got.attrs["sample"] == "evenly 3"
    every = reference(ds.gallery[:4])
    assert np.abs(got.features[:4] - every).max() > 1e-3  # not every frame


def test_a_seq_len_beyond_the_tracklets_says_it_repeats_frames(video, tmp_path, cli):
    ds = load_dataset("synthreid-video", video)
    lengths = [len(t.paths) for t in ds.query]
    assert max(lengths) < 100
    extra = ["--sample", "evenly", "--seq-len", "100", "--subsets", "query"]
    code, _, err = cli(*extract_args(video, tmp_path, *extra))
    assert code == 0, err
    ratio = 100 * len(lengths) / sum(lengths)
    assert (
        f"--seq-len 100 is more than the frames of {len(lengths)} of {len(lengths)} "
        f"tracklets (the longest has {max(lengths)}): their frames are repeated, {ratio:.1f}x "
        "the frames of --sample all"
    ) in err
    code, _, err = cli(*extract_args(video, tmp_path / "b", "--sample", "evenly", "--seq-len",
                                     str(min(lengths)), "--subsets", "query"))  # fmt: skip
    assert code == 0 and "are repeated" not in err


def test_interrupted_extraction_resumes_to_the_same_file(video, tmp_path, monkeypatch):
    from reidkit.features import tracklets
    from reidkit.features.jobs import extract_dataset
    from reidkit.features.options import ExtractOptions

    monkeypatch.setattr(tracklets, "CHUNK_TRACKLETS", 5)
    common = dict(
        model_name="resnet18", seed=0, dataset="synthreid-video", root=video,
        subsets=("gallery",), options=ExtractOptions(height=64, width=32), device="cpu",
        batch_size=6,
    )  # fmt: skip

    def stop_late(name):
        def progress(done, total, *_):
            if done > total * 0.6:
                raise KeyboardInterrupt

        return progress

    with pytest.raises(KeyboardInterrupt):
        extract_dataset(out_dir=tmp_path / "cut", progress_factory=stop_late, **common)
    assert not (tmp_path / "cut" / "synthreid-video-gallery.h5").exists()
    resumed = extract_dataset(out_dir=tmp_path / "cut", **common)["files"][0]
    straight = extract_dataset(out_dir=tmp_path / "straight", **common)["files"][0]
    assert resumed["resumed"] >= 10 and resumed["rows"] == straight["rows"] == 32
    with (
        h5py.File(tmp_path / "cut" / "synthreid-video-gallery.h5") as a,
        h5py.File(tmp_path / "straight" / "synthreid-video-gallery.h5") as b,
    ):
        for name in ("features", "pids", "camids", "paths", "dsetids", "frames"):
            assert np.array_equal(a[name][()], b[name][()]), name
    again = extract_dataset(out_dir=tmp_path / "cut", **common)["files"][0]
    assert again["up_to_date"]


def test_unreadable_frames_fail_naming_them_or_are_left_out(video, tmp_path, cli):
    root = tmp_path / "data"
    shutil.copytree(video, root)
    ds = load_dataset("synthreid-video", root)
    hurt, lost = ds.query[2], ds.query[5]
    with open(hurt.paths[1], "wb") as f:
        f.write(b"not a jpeg")
    for path in lost.paths:
        with open(path, "wb") as f:
            f.write(b"")
    code, _, err = cli(*extract_args(root, tmp_path / "f", "--subsets", "query"))
    assert code == 1 and f"error: cannot read image {hurt.paths[1]}" in err
    assert not (tmp_path / "f" / "synthreid-video-query.h5").exists()
    code, out, err = cli(
        *extract_args(root, tmp_path / "f", "--subsets", "query", "--skip-bad", "--json")
    )
    assert code == 0, err
    result = json.loads(out)["files"][0]
    assert result["skipped"] == [lost.path]
    assert result["skipped_frames"] == [hurt.paths[1], *lost.paths]
    got = read_features(tmp_path / "f" / "synthreid-video-query.h5")
    assert len(got) == result["rows"] == len(ds.query) - 1  # no readable frame: left out
    assert got.paths.index(os.path.relpath(hurt.path, root / "synthreid-video")) == 2
    kept = [f for i, f in enumerate(hurt.paths) if i != 1]
    expected = reference([hurt._replace(paths=tuple(kept))])
    assert np.abs(got.features[2] - expected[0]).max() < 1e-4 * max(1, np.abs(expected).max())
    base = root / "synthreid-video"
    assert os.path.relpath(hurt.paths[1], base) in json.loads(got.attrs["skipped_frames"])
    assert json.loads(got.attrs["skipped"]) == [os.path.relpath(lost.path, base)]


def test_what_cannot_be_honoured_is_refused(video, market_tree, tmp_path, cli):
    code, _, err = cli(*extract_args(video, tmp_path, "--seq-len", "4"))
    assert code == 2 and "--seq-len is for --sample evenly" in err
    code, _, err = cli(*extract_args(video, tmp_path, "--temporal", "median"))
    assert code == 2 and "--temporal must be avg or max, not 'median'" in err
    code, _, err = cli(*extract_args(video, tmp_path, "--sample", "random"))
    assert code == 2 and "--sample must be all or evenly" in err
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    code, _, err = cli(
        "extract", "--onnx", onnx, "--dataset", "synthreid-video", "--root", video,
        "--out", tmp_path,
    )  # fmt: skip
    assert code == 2 and "--onnx extracts images; synthreid-video holds tracklets" in err
    code, _, err = cli(
        "extract", "--model", "resnet18", "--dataset", "market1501", "--root",
        market_tree.root, "--out", tmp_path, "--sample", "evenly",
    )  # fmt: skip
    assert code == 2 and "--sample is for video datasets, and market1501 holds images" in err
    assert not list(tmp_path.glob("*.h5"))


def test_locked_output_exits_75(video, tmp_path, cli):
    with file_lock(tmp_path / "synthreid-video-query.h5"):
        code, _, err = cli(*extract_args(video, tmp_path, "--subsets", "query"))
    assert code == 75 and "another reidkit process" in err


def test_evaluate_refuses_tracklets_against_images(video, tmp_path, cli):
    assert cli(*extract_args(video, tmp_path, "--subsets", "query"))[0] == 0
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in load_dataset("synthreid-video", video).gallery[:3]:
        shutil.copy(t.path, frames / os.path.basename(t.path))
    code, _, err = cli(
        "extract", "--model", "resnet18", "--seed", "0", "--images", frames, "--height", "64",
        "--width", "32", "--out", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    code, _, err = cli(
        "evaluate", tmp_path / "synthreid-video-query.h5", tmp_path / "frames-images.h5"
    )
    assert code == 2
    assert "do not belong together: kind of rows (image or tracklet) tracklet against image" in err


def test_torchrun_two_processes_write_the_single_process_file(video, tmp_path, cli):
    """One thread in every process (here --threads 1): CPU kernels then reduce in the same
    order, and the two processes' file equals this process's, bit for bit."""
    # bit for bit at any size: a quarter of the pixels
    args = [*extract_args(video, "OUT", "--batch-size", "7", "--workers", "0", size=(32, 16))]
    env = reidkit_env(OMP_NUM_THREADS="1")

    def with_out(out):
        return [str(out) if a == "OUT" else str(a) for a in args]

    code, _, err = cli(*with_out(tmp_path / "one"), "--threads", "1")
    assert code == 0, err
    two = subprocess.run(
        [*torchrun_argv(2), *with_out(tmp_path / "two")], env=env, capture_output=True, timeout=300
    )
    assert two.returncode == 0, two.stderr
    for subset in ("query", "gallery"):
        name = f"synthreid-video-{subset}.h5"
        with h5py.File(tmp_path / "one" / name) as a, h5py.File(tmp_path / "two" / name) as b:
            for key in ("features", "pids", "camids", "paths", "frames"):
                assert np.array_equal(a[key][()], b[key][()]), (subset, key)


def test_visrank_draws_tracklets_by_their_first_frame_and_says_so(video, tmp_path, cli):
    assert cli(*extract_args(video, tmp_path / "f"))[0] == 0
    q, g = (tmp_path / "f" / f"synthreid-video-{s}.h5" for s in ("query", "gallery"))
    code, out, err = cli("visrank", q, g, "--out", tmp_path / "vis", "--num-queries", "3", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["shown"] == "the first frame of each tracklet"
    assert summary["images"] == 3 and summary["missing_images"] == 0
    code, out, err = cli("visrank", q, g, "--out", tmp_path / "vis", "--num-queries", "3")
    assert "(tracklets drawn by their first frame)" in out + err
    ds = load_dataset("synthreid-video", video)
    rows = (tmp_path / "vis" / "ranked.csv").read_text().splitlines()
    first_frames = {os.path.relpath(t.path, ds.root) for t in ds.query}
    header = rows[0].split(",")
    assert {r.split(",")[header.index("query_path")] for r in rows[1:]} <= first_frames
