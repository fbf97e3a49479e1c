"""Weights people have: torchreid's OSNet and ResNet-50 files, torchvision's, and refusals.

A torchreid OSNet state dict (tests/torchreid_reference.py) loaded into reidkit's OSNet
must use every tensor and give the reference forward pass's features.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import counted
from published import save_legacy
from torchreid_reference import TORCHREID_CHANNELS, torchreid_osnet_forward, torchreid_osnet_state
from torchvision.models import resnet50

from reidkit.errors import DataError
from reidkit.models import create_model, load_weights, read_state_dict


@pytest.mark.parametrize("name", list(TORCHREID_CHANNELS))
def test_torchreid_osnet_loads_every_tensor_and_gives_its_features(tmp_path, name):
    state = torchreid_osnet_state(TORCHREID_CHANNELS[name])
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    model = create_model(name, num_classes=751).eval()
    report = load_weights(model, path)
    # every tensor of the model comes from the file; the fc bias is folded, so the file
    # has one tensor more than the model; BatchNorm's batch counters are not counted
    assert report["missing"] == [] and report["skipped"] == []
    assert len(report["used"]) == len(counted(model.state_dict())) == len(counted(state)) - 1
    assert len(report["used"]) == 486 and len(model.state_dict()) == 566
    x = torch.randn(3, 3, 128, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model(x), torchreid_osnet_forward(state, x)
    assert want.abs().max() > 0.1  # features worth comparing, not all zero
    assert (got - want).abs().max().item() < 1e-5


def torchreid_checkpoint_forms(state):
    """The forms torchreid writes: a zoo state dict, save_checkpoint's dict as its Engine
    fills it (numpy scalars), and a DataParallel model's state dict."""
    return {
        "zoo": state,
        "engine": {
            "state_dict": state,
            "epoch": 60,
            "rank1": np.float64(0.873),
            "optimizer": {"state": {}, "param_groups": [{"lr": np.float32(3e-4)}]},
        },
        "dataparallel": {f"module.{k}": v for k, v in state.items()},
    }


@pytest.mark.parametrize("form", ["zoo", "engine", "dataparallel"])
def test_every_form_of_torchreid_file_reads_the_same(tmp_path, form):
    state = torchreid_osnet_state(TORCHREID_CHANNELS["osnet_x0_25"])
    if form == "zoo":  # the model zoo's files date from 2019: torch's legacy format
        save_legacy(state, tmp_path / "w.pth")
    else:
        torch.save(torchreid_checkpoint_forms(state)[form], tmp_path / "w.pth")
    read = read_state_dict(tmp_path / "w.pth")
    assert len(read) == len(state) - 1 and "conv2.0.streams.3.3.depthwise.weight" in read
    assert torch.equal(
        read["conv2.0.streams.3.3.depthwise.weight"], state["conv2.0.conv2d.3.conv2.weight"]
    )
    assert torch.equal(read["fc.1.running_mean"], state["fc.1.running_mean"] - state["fc.0.bias"])


def test_files_with_other_objects_are_refused_not_unpickled(tmp_path):
    torch.save(
        {"state_dict": {"a": torch.zeros(1)}, "when": np.datetime64("2026-01-01")},
        tmp_path / "odd.pth",
    )
    with pytest.raises(DataError) as err:
        read_state_dict(tmp_path / "odd.pth")
    assert "which reidkit never unpickles" in err.value.message
    assert "weights_only" not in err.value.message + (err.value.hint or "")


def test_torchreid_resnet50_is_resnet50_without_bnneck_and_last_stride_2(tmp_path):
    torch.manual_seed(0)
    reference = resnet50(weights=None).eval()  # torchreid's ResNet has torchvision's names
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    state |= {"classifier.weight": torch.randn(751, 2048), "classifier.bias": torch.randn(751)}
    torch.save(torchreid_checkpoint_forms(state)["engine"], tmp_path / "r50.pth.tar")
    model = create_model("resnet50", 751, bnneck=False, last_stride=2).eval()
    report = load_weights(model, tmp_path / "r50.pth.tar")
    assert (len(report["used"]), report["skipped"], report["missing"]) == (267, [], [])
    assert len(counted(state)) == 267
    reference.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max().item() < 1e-5
    # into the default (BNNeck) resnet50, for features: refused, saying what to choose
    with pytest.raises(DataError) as err:
        load_weights(create_model("resnet50", 751), tmp_path / "r50.pth.tar")
    assert err.value.message.endswith("leaves 4 of the model's 270 tensors unloaded (bnneck: 4)")
    assert "--no-bnneck" in err.value.hint and "--last-stride 2" in err.value.hint


def test_weights_that_leave_the_trunk_half_loaded_are_refused(tmp_path):
    # OSNet x1.0's weights for OSNet x0.25: names match, most shapes do not
    torch.manual_seed(3)
    source = create_model("osnet_x1_0", 10).state_dict()
    torch.save(source, tmp_path / "x1_0.pth")
    torch.manual_seed(4)
    model = create_model("osnet_x0_25", 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DataError) as err:
        load_weights(model, tmp_path / "x1_0.pth")
    message = err.value.message
    assert message.startswith(f"{tmp_path / 'x1_0.pth'}: leaves ")
    assert "of the model's 486 tensors unloaded (conv2: " in message and "conv5: " in message
    assert "--allow-partial" in err.value.hint
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched
    report = load_weights(model, tmp_path / "x1_0.pth", allow_partial=True)
    now = model.state_dict()
    assert all(torch.equal(now[k], source[k]) for k in report["used"])
    assert all(torch.equal(now[k], before[k]) for k in report["missing"])
    assert len(report["used"]) + len(report["missing"]) == 486 and len(report["missing"]) > 300


def test_extract_reports_what_it_loaded_and_refuses_partial_loads(cli, tmp_path, market_tree):
    state = torchreid_osnet_state(TORCHREID_CHANNELS["osnet_x0_25"])
    torch.save(torchreid_checkpoint_forms(state)["engine"], tmp_path / "tr.pth.tar")
    common = [
        "--model",
        "osnet_x0_25",
        "--dataset",
        str(market_tree.base),
        "--height",
        "64",
        "--width",
        "32",
        "--device",
        "cpu",
    ]
    code, out, err = cli(
        "extract", *common, "--weights", tmp_path / "tr.pth.tar", "--out", tmp_path / "f", "--json"
    )
    assert code == 0, err
    weights = json.loads(out)["weights"]
    # everything: the model is built with the file's 751 identities, so the classifier loads
    assert (weights["used"], weights["missing"], weights["skipped"]) == (486, 0, 0)
    assert weights["skipped_keys"] == []
    torch.save(create_model("osnet_x1_0", 10).state_dict(), tmp_path / "x1_0.pth")
    code, out, err = cli(
        "extract", *common, "--weights", tmp_path / "x1_0.pth", "--out", tmp_path / "g"
    )
    lines = err.strip().splitlines()
    assert code == 1 and lines[-2].startswith(f"error: {tmp_path / 'x1_0.pth'}: leaves ")
    assert not (tmp_path / "g").exists()
    code, out, err = cli(
        "extract",
        *common,
        "--weights",
        tmp_path / "x1_0.pth",
        "--out",
        tmp_path / "g",
        "--allow-partial",
        "--json",
    )
    weights = json.loads(out)["weights"]
    assert code == 0 and weights["used"] + weights["missing"] == 486 and weights["missing"] > 300
    assert weights["missing_by_module"].startswith("conv")


def test_a_reidkit_checkpoint_given_as_weights_brings_its_data_settings(cli, tmp_path, synth_tiny):
    """extract --model NAME --weights last.pt extracts at the size the checkpoint was
    trained at, as extract CHECKPOINT does, not at the model's default 256x128."""
    from reidkit.features.store import feature_file_info
    from reidkit.models.checkpoint import model_spec, save_checkpoint

    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=16, bnneck=False)
    data = {"height": 64, "width": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    save_checkpoint(tmp_path / "last.pt", model.eval(), model_spec("resnet18", model, 16),
                    config={"data": data})  # fmt: skip
    common = ["--dataset", "synthreid", "--root", synth_tiny, "--subsets", "query", "--json"]
    # into the default (BNNeck) resnet18: refused, pointing at the checkpoint itself
    code, _, err = cli("extract", "--model", "resnet18", "--weights", tmp_path / "last.pt",
                       *common, "--out", tmp_path / "x")  # fmt: skip
    assert code == 1 and err.strip().splitlines()[-1] == (
        "hint: the checkpoint's model has no BNNeck: give --no-bnneck (model.bnneck=false), "
        "or give the checkpoint itself as CHECKPOINT, which builds its model as trained"
    )
    code, out, err = cli("extract", "--model", "resnet18", "--no-bnneck", "--weights",
                         tmp_path / "last.pt", *common, "--out", tmp_path / "a")  # fmt: skip
    assert code == 0, err
    assert f"{tmp_path / 'last.pt'} is a reidkit checkpoint: its data settings apply" in err
    attrs = feature_file_info(tmp_path / "a" / "synthreid-query.h5")["attrs"]
    assert list(attrs["image_size"]) == [64, 32] and list(attrs["mean"]) == [0.5, 0.5, 0.5]
    assert json.loads(out)["weights"]["missing"] == 0  # its 16 identities: nothing left out
    # an explicit size still wins
    code, out, err = cli("extract", "--model", "resnet18", "--no-bnneck", "--weights",
                         tmp_path / "last.pt", *common, "--height", "32", "--width", "16",
                         "--out", tmp_path / "b")  # fmt: skip
    attrs = feature_file_info(tmp_path / "b" / "synthreid-query.h5")["attrs"]
    assert code == 0 and list(attrs["image_size"]) == [32, 16]
