from __future__ import annotations

import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest
import torch
from helpers import MARKET_SPEC, reidkit_env, torchrun_argv

from reidkit.data import load_dataset
from reidkit.features.batches import ImageList
from reidkit.features.store import read_features
from reidkit.fileio import file_lock
from reidkit.models import create_model
from reidkit.models.checkpoint import model_spec, save_checkpoint

SMALL = ["--height", "64", "--width", "32", "--workers", "0", "--batch-size", "4"]


def extract(cli, *args):
    code, out, err = cli("extract", *args, "--json")
    return code, (json.loads(out) if code == 0 else None), err


def test_model_features_equal_a_direct_forward(market_tree, tmp_path, cli):
    code, result, err = extract(
        cli,
        "--model",
        "osnet_x0_25",
        "--dataset",
        "market1501",
        "--root",
        market_tree.root,
        "--out",
        tmp_path / "f",
        *SMALL,
    )
    assert code == 0, err
    files = {f["subset"]: f for f in result["files"]}
    assert set(files) == {"query", "gallery"}
    fs = read_features(files["query"]["file"])
    ds = load_dataset("market1501", market_tree.root)
    assert len(fs) == len(ds.query) == len(MARKET_SPEC["query"])
    assert fs.paths == [os.path.relpath(s.path, ds.root) for s in ds.query]
    assert fs.pids.tolist() == [s.pid for s in ds.query]
    attrs = fs.attrs
    assert attrs["model"] == "osnet_x0_25" and attrs["dataset"] == "market1501"
    assert attrs["subset"] == "query" and attrs["image_size"] == [64, 32]
    assert attrs["flip"] is False and attrs["normalized"] is False and attrs["root"] == str(ds.root)
    # what evaluate needs to tell files apart and to choose the distance
    assert attrs["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert attrs["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert attrs["distance"] == "euclidean"  # OSNet's, as torchreid evaluates it
    torch.manual_seed(0)
    model = create_model("osnet_x0_25", num_classes=1).eval()
    images = ImageList([s.path for s in ds.query], 0, 64, 32)
    pixels = torch.stack([torch.from_numpy(images[i][0]) for i in range(len(images))])
    assert pixels.dtype == torch.uint8 and pixels.shape[1:] == (64, 32, 3)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    batch = (pixels.permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        expected = model(batch).numpy()
    np.testing.assert_allclose(fs.features, expected, atol=1e-5)


def test_seeded_models_are_reproducible_and_reruns_are_up_to_date(market_tree, tmp_path, cli):
    args = ["--dataset", "market1501", "--root", market_tree.root, "--subsets", "gallery", *SMALL]
    extract(cli, "--model", "osnet_x0_25", "--out", tmp_path / "a", *args)
    extract(cli, "--model", "osnet_x0_25", "--out", tmp_path / "b", *args)
    extract(cli, "--model", "osnet_x0_25", "--seed", "1", "--out", tmp_path / "c", *args)
    a, b, c = (read_features(tmp_path / d / "market1501-gallery.h5").features for d in "abc")
    assert np.array_equal(a, b) and not np.allclose(a, c)
    code, result, _ = extract(cli, "--model", "osnet_x0_25", "--out", tmp_path / "a", *args)
    assert code == 0 and result["files"][0]["up_to_date"] is True
    code, result, _ = extract(
        cli, "--model", "osnet_x0_25", "--out", tmp_path / "a", "--force", *args
    )
    assert result["files"][0]["up_to_date"] is False and result["files"][0]["rows"] == len(a)
    code, result, _ = extract(
        cli, "--model", "osnet_x0_25", "--out", tmp_path / "a", "--flip", *args
    )
    assert result["files"][0]["up_to_date"] is False  # other options: redone


def test_checkpoint_supplies_model_and_image_size(market_tree, tmp_path, cli):
    torch.manual_seed(3)
    model = create_model("resnet18", num_classes=4)
    config = {"data": {"height": 96, "width": 48, "mean": [0.5] * 3, "std": [0.25] * 3}}
    ckpt = save_checkpoint(
        tmp_path / "best.pt", model, model_spec("resnet18", model, 4), config=config
    )
    code, result, err = extract(
        cli,
        ckpt,
        "--dataset",
        "market1501",
        "--root",
        market_tree.root,
        "--out",
        tmp_path / "f",
        "--subsets",
        "query",
        "--workers",
        "0",
    )
    assert code == 0, err
    fs = read_features(result["files"][0]["file"])
    assert fs.attrs["image_size"] == [96, 48] and fs.dim == 512
    assert len(fs.attrs["checkpoint_sha256"]) == 64 and fs.attrs["config"] == config


def test_corrupt_image_fails_naming_it_unless_skip_bad(market_tree, tmp_path, cli):
    bad = next((market_tree.base / "query").glob("0003_c2*.jpg"))
    bad.write_bytes(b"\xff\xd8 truncated jpeg")
    args = [
        "--model",
        "osnet_x0_25",
        "--dataset",
        "market1501",
        "--root",
        market_tree.root,
        "--subsets",
        "query",
        "--out",
        tmp_path / "f",
        *SMALL,
    ]
    code, _, err = extract(cli, *args)
    assert code == 1 and f"error: cannot read image {bad}" in err and "--skip-bad" in err
    assert not (tmp_path / "f" / "market1501-query.h5").exists()
    code, result, _ = extract(cli, *args, "--skip-bad")
    assert code == 0 and result["files"][0]["skipped"] == [str(bad)]
    fs = read_features(tmp_path / "f" / "market1501-query.h5")
    assert len(fs) == len(MARKET_SPEC["query"]) - 1
    assert json.loads(fs.attrs["skipped"]) == [os.path.relpath(bad, fs.attrs["root"])]


def test_plain_image_folder(market_tree, tmp_path, cli):
    folder = tmp_path / "crops"
    shutil.copytree(market_tree.base / "query", folder)
    code, result, _ = extract(
        cli, "--model", "osnet_x0_25", "--images", folder, "--out", tmp_path / "f", *SMALL
    )
    fs = read_features(result["files"][0]["file"])
    assert code == 0 and result["files"][0]["file"].endswith("crops-images.h5")
    assert len(fs) == len(MARKET_SPEC["query"]) and set(fs.pids.tolist()) == {-1}


def test_usage_errors(market_tree, tmp_path, cli):
    code, _, err = extract(cli, "--dataset", "market1501", "--root", market_tree.root)
    assert (
        code == 2
        and "give one of CHECKPOINT, --model NAME (or --weights FILE of fast-reid) or --onnx FILE"
        in err
    )
    code, _, err = extract(cli, "--model", "resnet5", "--dataset", "market1501")
    assert code == 2 and "did you mean 'resnet50'" in err
    code, _, err = extract(
        cli,
        "--model",
        "osnet_x0_25",
        "--dataset",
        "market1501",
        "--root",
        market_tree.root,
        "--amp",
        "fp8",
    )
    assert code == 2 and "--amp must be one of off, bf16, fp16" in err
    code, _, err = extract(cli, tmp_path / "missing.pt", "--dataset", "market1501")
    assert code == 2 and "checkpoint not found" in err
    model = create_model("resnet18", num_classes=2)
    ckpt = save_checkpoint(tmp_path / "best.pt", model, model_spec("resnet18", model, 2))
    for source in (["--model", "osnet_x0_25"], [ckpt]):
        code, _, err = extract(
            cli, *source, "--dataset", "market1501", "--root", market_tree.root, "--subsets", ","
        )
        assert code == 2 and "--subsets: name at least one of train, query, gallery" in err


def test_locked_output_exits_75(market_tree, tmp_path, cli):
    out = tmp_path / "f"
    with file_lock(out / "market1501-query.h5"):
        code, _, err = extract(
            cli,
            "--model",
            "osnet_x0_25",
            "--dataset",
            "market1501",
            "--root",
            market_tree.root,
            "--out",
            out,
            "--subsets",
            "query",
            *SMALL,
        )
    assert code == 75 and "another reidkit process" in err


def test_a_run_takes_every_files_lock_before_it_writes_any(market_tree, tmp_path, cli):
    """Another process writing the gallery file stops a run of query and gallery before it
    writes the query file: a run holds all its outputs or none, so a second run waiting for
    the query file cannot take the gallery file between two of the first run's files."""
    out = tmp_path / "f"
    with file_lock(out / "market1501-gallery.h5"):
        code, _, err = extract(
            cli, "--model", "osnet_x0_25", "--dataset", "market1501", "--root",
            market_tree.root, "--out", out, "--subsets", "query,gallery", *SMALL,
        )  # fmt: skip
    assert code == 75 and "market1501-gallery.h5 is being written by another" in err
    assert not (out / "market1501-query.h5").exists()


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    from reidkit.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, "tiny", seed=0, workers=2)
    return root


def test_torchrun_two_cpu_processes_write_the_single_process_file(tiny_synth, tmp_path, cli):
    """Batches of 48: the gallery's 136 images are 3 batches, split unevenly between the two
    processes; the query's 48 are one batch for two processes (rank 0's share is empty).
    Both files equal the single process's."""
    args = ["extract", "--model", "osnet_x0_25", "--dataset", "synthreid", "--root", tiny_synth,
            "--height", "64", "--width", "32", "--batch-size", "48", "--workers", "0",
            "--device", "cpu"]  # fmt: skip
    # one thread per process in both runs (here --threads 1): CPU kernels then reduce in
    # the same order
    env = reidkit_env(OMP_NUM_THREADS="1")
    code, _, err = cli(*args, "--out", tmp_path / "one", "--threads", "1")
    assert code == 0, err
    launcher = [*torchrun_argv(2), *map(str, args), "--out", str(tmp_path / "two"), "--json"]
    two = subprocess.run(launcher, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    result = json.loads(two.stdout)  # one JSON document: only rank 0 prints
    assert [(f["subset"], f["rows"]) for f in result["files"]] == [("query", 48), ("gallery", 136)]
    for subset in ("query", "gallery"):
        name = f"synthreid-{subset}.h5"
        with h5py.File(tmp_path / "one" / name) as a, h5py.File(tmp_path / "two" / name) as b:
            for key in ("features", "pids", "camids", "paths", "dsetids"):
                assert np.array_equal(a[key][()], b[key][()]), (subset, key)
            assert a.attrs["provenance"] == b.attrs["provenance"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if not p.name.startswith(".")) == [
        "synthreid-gallery.h5",
        "synthreid-query.h5",
    ]


def test_a_batch_reaches_the_model_as_the_loader_made_it():
    """No copy out of the loader's (pinned, on CUDA) buffer before the transfer; rows of
    unreadable images are dropped after it."""
    from reidkit.features.extractor import TorchRunner
    from reidkit.features.options import ExtractOptions
    from reidkit.models.spec import IMAGENET_MEAN, IMAGENET_STD

    model = create_model("osnet_x0_25", 10)
    imagenet = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    runner = TorchRunner(model, ExtractOptions(height=32, width=16, **imagenet), "cpu")
    batch = torch.arange(3 * 32 * 16 * 3, dtype=torch.int32).to(torch.uint8).view(3, 32, 16, 3)
    assert runner._readable(batch, np.ones(3, dtype=bool)).data_ptr() == batch.data_ptr()
    kept = runner._readable(batch, np.array([True, False, True]))
    assert torch.equal(kept, batch[[0, 2]])
    features = runner.forward(batch, np.array([True, False, True]))
    assert np.allclose(features, runner.forward(batch[[0, 2]], np.ones(2, dtype=bool)))
