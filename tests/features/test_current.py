"""Whether a feature file is current: one rule (the file's whole provenance against this
run's, every option resolved from the checkpoint as the extraction resolves it), the same
for the rerun decided without torch and for the extraction itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import reidkit_env
from video_trees import write_duke_video

from reidkit.features.store import read_features
from reidkit.models import create_model
from reidkit.models.checkpoint import model_spec, save_checkpoint


def tiny_checkpoint(path, **config):
    """A resnet18 checkpoint trained, as its config says, at 64x32 (plus ``config``)."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=4, image_size=(64, 32)).eval()
    config = {"data": {"height": 64, "width": 32, **config.pop("data", {})}, **config}
    spec = model_spec("resnet18", model, 4, image_size=[64, 32])
    return save_checkpoint(path, model, spec, config=config)


def extract(cli, *args):
    code, out, err = cli("extract", *args, "--workers", "0", "--device", "cpu", "--json")
    assert code == 0, err
    return json.loads(out)["files"]


def stat(path):
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def extract_without_torch(*args):
    """``reidkit extract ARGS --json`` in a fresh interpreter: (exit code, the JSON's
    files, whether torch got imported)."""
    script = (
        "import sys; from reidkit.cli.app import run; code = run(sys.argv[1:]); "
        "print('torch' in sys.modules, file=sys.stderr); sys.exit(code)"
    )
    argv = ["extract", *map(str, args), "--workers", "0", "--device", "cpu", "--json"]
    done = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        env=reidkit_env(),
        timeout=120,
    )
    files = json.loads(done.stdout)["files"] if done.returncode == 0 else None
    return done.returncode, files, done.stderr.strip().splitlines()[-1] == "True"


def test_a_plain_rerun_after_another_image_size_redoes_the_file(market_tree, tmp_path, cli):
    ckpt = tiny_checkpoint(tmp_path / "best.pt")
    data = [ckpt, "--dataset", "market1501", "--root", market_tree.root, "--subsets", "query"]
    data += ["--out", tmp_path / "f"]
    out = tmp_path / "f" / "market1501-query.h5"
    (first,) = extract(cli, *data, "--height", "128", "--width", "64")
    assert first["up_to_date"] is False and read_features(out).attrs["image_size"] == [128, 64]
    before = stat(out)
    # the effective size is the checkpoint's 64x32 now: not the file's 128x64
    (second,) = extract(cli, *data)
    assert second["up_to_date"] is False and second["rows"] == 3
    assert read_features(out).attrs["image_size"] == [64, 32]
    assert json.loads(read_features(out).attrs["provenance"])["options"]["height"] == 64
    assert stat(out)[0] != before[0]  # replaced by a new file, as atomic writes do
    written = stat(out)
    # the same effective options, given or defaulted: nothing to do, decided without torch
    code, third, loaded_torch = extract_without_torch(*data)
    assert code == 0 and not loaded_torch
    assert [f["up_to_date"] for f in third] == [True] and third[0]["rows"] == 3
    code, fourth, loaded_torch = extract_without_torch(*data, "--height", "64", "--width", "32")
    assert code == 0 and not loaded_torch and fourth[0]["up_to_date"] is True
    code, text, err = cli("extract", *data, "--workers", "0")
    assert code == 0 and f"{out} is up to date (3 rows); --force redoes it" in text + err
    assert stat(out) == written


def test_a_rerun_without_torch_reports_the_resolved_options(market_tree, tmp_path, cli):
    ckpt = tiny_checkpoint(tmp_path / "best.pt", data={"mean": [0.5] * 3, "std": [0.25] * 3})
    data = [ckpt, "--dataset", "market1501", "--root", market_tree.root, "--out", tmp_path / "f"]
    data += ["--subsets", "query", "--workers", "0", "--json"]
    code, out, err = cli("extract", *data)
    assert code == 0, err
    written = json.loads(out)["options"]
    assert (written["height"], written["mean"], written["sample"]) == (64, [0.5] * 3, None)
    code, out, err = cli("extract", *data)
    assert code == 0 and json.loads(out)["files"][0]["up_to_date"] is True
    assert json.loads(out)["options"] == written


def test_the_same_checkpoint_by_another_path_is_the_same_checkpoint(market_tree, tmp_path, cli):
    """Its sha256 says which checkpoint it is, in the rerun without torch as in the
    extraction (which decides here, as the gallery file is missing)."""
    ckpt = tiny_checkpoint(tmp_path / "best.pt")
    data = ["--dataset", "market1501", "--root", market_tree.root, "--out", tmp_path / "f"]
    (query,) = extract(cli, ckpt, *data, "--subsets", "query")
    assert query["up_to_date"] is False
    kept = stat(tmp_path / "f" / "market1501-query.h5")
    copy = shutil.copy(ckpt, tmp_path / "copy.pt")
    files = extract(cli, copy, *data, "--subsets", "query,gallery")
    assert [(f["subset"], f["up_to_date"]) for f in files] == [("query", True), ("gallery", False)]
    assert stat(tmp_path / "f" / "market1501-query.h5") == kept
    code, files, loaded_torch = extract_without_torch(ckpt, *data, "--subsets", "query,gallery")
    assert code == 0 and not loaded_torch
    assert [f["up_to_date"] for f in files] == [True, True]


@pytest.fixture
def duke_video(tmp_path):
    write_duke_video(tmp_path / "data")
    return tmp_path / "data"


def test_a_plain_tracklet_rerun_after_other_pooling_redoes_the_file(duke_video, tmp_path, cli):
    # trained with max pooling over 4 frames (reidkit's default is avg): a plain run pools
    # all frames, with max
    ckpt = tiny_checkpoint(tmp_path / "best.pt", data={"seq_len": 4}, model={"temporal": "max"})
    data = [ckpt, "--dataset", "dukemtmcvidreid", "--root", duke_video, "--subsets", "query"]
    data += ["--out", tmp_path / "f"]
    out = tmp_path / "f" / "dukemtmcvidreid-query.h5"
    (first,) = extract(cli, *data, "--sample", "evenly", "--seq-len", "8", "--temporal", "max")
    attrs = read_features(out).attrs
    assert first["up_to_date"] is False and attrs["sample"] == "evenly 8"
    (second,) = extract(cli, *data)
    attrs = read_features(out).attrs
    assert second["up_to_date"] is False and second["rows"] == 2
    assert (attrs["sample"], attrs["temporal"]) == ("all", "max")
    options = json.loads(attrs["provenance"])["options"]
    assert (options["sample"], options["temporal"], "seq_len" in options) == ("all", "max", False)
    written = stat(out)
    code, third, loaded_torch = extract_without_torch(*data)
    assert code == 0 and not loaded_torch and third[0]["up_to_date"] is True
    (fourth,) = extract(cli, *data, "--temporal", "max")  # the default, given
    assert fourth["up_to_date"] is True and stat(out) == written
    (fifth,) = extract(cli, *data, "--sample", "evenly")  # the checkpoint's 4 frames
    assert fifth["up_to_date"] is False and read_features(out).attrs["sample"] == "evenly 4"


def test_the_device_that_ran_the_model_is_provenance(market_tree, tmp_path, cli, monkeypatch):
    """A file made on the CPU is not current for a run on CUDA (other kernels, other
    rounding), and the reverse; cuda is faked for the decision only."""
    from reidkit.features import jobs
    from reidkit.features.options import ExtractOptions

    ckpt = tiny_checkpoint(tmp_path / "best.pt")
    data = [ckpt, "--dataset", "market1501", "--root", market_tree.root, "--subsets", "query"]
    data += ["--out", tmp_path / "f"]
    extract(cli, *data)
    options = json.loads(read_features(tmp_path / "f" / "market1501-query.h5").attrs["provenance"])
    assert options["options"]["device"] == "cpu"
    monkeypatch.setattr(jobs, "resolve_device", lambda device: "cuda")
    options = ExtractOptions()  # nothing given: all as the checkpoint says
    assert jobs._unchanged_outputs(ckpt, "market1501", market_tree.root, ("query",),
                                   tmp_path / "f", options, "cuda") is None  # fmt: skip
    assert jobs._unchanged_outputs(ckpt, "market1501", market_tree.root, ("query",),
                                   tmp_path / "f", options, "cpu") is not None  # fmt: skip


def test_fp32_on_cuda_runs_without_tf32():
    from reidkit.features.extractor import full_precision

    flags = (torch.backends.cudnn, torch.backends.cuda.matmul)
    saved = [f.allow_tf32 for f in flags]
    try:
        for f in flags:
            f.allow_tf32 = True
        full_precision("cuda:0", "bf16")  # autocast: TF32 does not matter
        assert all(f.allow_tf32 for f in flags)
        full_precision("cuda:0", "off")
        assert not any(f.allow_tf32 for f in flags)
    finally:
        for f, value in zip(flags, saved, strict=True):
            f.allow_tf32 = value
