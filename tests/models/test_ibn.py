"""IBN-Net trunks: IBN-Net's names and shapes, its features, its published ImageNet files
and torchreid's files, against tests/resnet_reference.py (written from IBN-Net's code, not
from reidkit's)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import FAST_TRAIN, counted, query_features
from published import ibn_imagenet_file, save_legacy
from resnet_reference import LAYOUTS, resnet_features, resnet_state

from reidkit.models import create_model, load_weights
from reidkit.models.checkpoint import load_checkpoint
from reidkit.models.pretrained import load_pretrained

CASES = [(d, s) for d in LAYOUTS for s in "ab"]


def relative_error(got, want) -> float:
    """The largest difference over the largest value (random weights make large sums)."""
    return ((got - want).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize(("depth", "design"), CASES)
def test_the_trunk_has_ibn_nets_names_and_shapes(depth, design):
    model = create_model(f"resnet{depth}_ibn_{design}", 1000, bnneck=False, last_stride=2)
    ours = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    theirs = {k: v.shape for k, v in resnet_state(depth, design).items() if not k.startswith("fc.")}
    assert counted(ours) == sorted(theirs)
    assert all(ours[k] == theirs[k] for k in theirs)
    normed = [k for k in theirs if ".IN." in k]
    if design == "b":
        assert "bn1.running_mean" not in theirs and len(normed) == 4  # two blocks' IN
    else:
        assert len(normed) == 2 * sum(LAYOUTS[depth][1][:3])  # bn1.IN of layer1-3's blocks


@pytest.mark.parametrize(
    ("depth", "design", "last_stride"), [(50, "a", 1), (50, "b", 2), (18, "a", 2), (18, "b", 1)]
)
def test_ibn_nets_weights_give_its_features(tmp_path, depth, design, last_stride):
    state = resnet_state(depth, design, seed=depth)
    path = tmp_path / "ibn.pth"
    save_legacy(state, path)
    model = create_model(
        f"resnet{depth}_ibn_{design}", 1000, bnneck=False, last_stride=last_stride
    ).eval()
    report = load_weights(model, path)  # all but the classifier, or an error
    assert sorted(report["skipped"]) == ["fc.bias", "fc.weight"]
    assert sorted(report["missing"]) == ["classifier.bias", "classifier.weight"]
    x = torch.randn(2, 3, 96, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model.features(x)
        want = resnet_features(state, x, depth, design, last_stride=last_stride)
    assert want.abs().max() > 0.1
    assert relative_error(got, want) < 1e-5


def test_torchreids_resnet50_ibn_a_file_loads_whole(tmp_path):
    """torchreid's resnet50_ibn_a (no BNNeck, last stride 2, a classifier with a bias), as
    its Engine saves it: every tensor used, and IBN-Net's features."""
    state = {k: v for k, v in resnet_state(50, "a", seed=3).items() if not k.startswith("fc.")}
    for key in [k for k in state if k.endswith("running_mean")]:  # torch 1.x's counters
        state[key.replace("running_mean", "num_batches_tracked")] = torch.tensor(900)
    state |= {"classifier.weight": torch.randn(751, 2048), "classifier.bias": torch.randn(751)}
    engine = {"state_dict": state, "epoch": 60, "rank1": np.float64(0.9)}
    save_legacy(engine, tmp_path / "model.pth.tar")
    model = create_model("resnet50_ibn_a", 751, bnneck=False, last_stride=2).eval()
    report = load_weights(model, tmp_path / "model.pth.tar")
    assert (report["skipped"], report["missing"]) == ([], [])
    assert len(report["used"]) == len(counted(state)) == len(counted(model.state_dict()))
    x = torch.randn(2, 3, 96, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert relative_error(model(x), resnet_features(state, x, 50, "a")) < 1e-5


@pytest.mark.parametrize(("depth", "design"), [(50, "a"), (18, "b")])
def test_imagenet_start_is_ibn_nets_file_with_every_ibn_tensor(
    tmp_path, monkeypatch, cli, depth, design
):
    """``pretrained: imagenet`` reads IBN-Net's release file from torch.hub's cache: made
    as IBN-Net made it (fc included, no BatchNorm counters, legacy serialization), every
    trunk tensor is used, the IBN layers included."""
    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    name = f"resnet{depth}_ibn_{design}"
    code, out, err = cli("models", "list", name, "--json")
    assert code == 0, err
    assert json.loads(out)["models"][0]["imagenet_cached"] is False
    digest = {"resnet50_ibn_a": "d9d0bb7b", "resnet18_ibn_b": "bc2f3c11"}[name]
    cached = home / "hub" / "checkpoints" / f"{name}-{digest}.pth"
    imagenet = ibn_imagenet_file(depth, design, cached, seed=4)
    code, out, _ = cli("models", "list", name, "--json")
    assert json.loads(out)["models"][0]["imagenet_cached"] is True
    model = create_model(name, 751)
    record = load_pretrained(model, name, "imagenet")
    trunk = counted(k for k in model.state_dict() if not k.startswith(("bnneck.", "classifier.")))
    assert record["source"] == "ibn-net" and record["file"] == str(cached)
    assert (record["used"], record["skipped"], record["missing"]) == (len(trunk), 2, 5)
    weights = model.state_dict()
    ibn_keys = [k for k in imagenet if ".IN." in k or (design == "b" and k.startswith("bn1."))]
    assert ibn_keys and all(torch.equal(weights[k], imagenet[k]) for k in ibn_keys)


def test_an_ibn_model_trains_its_instance_norms_and_extracts(cli, synth_tiny, tmp_path):
    """One epoch of resnet18_ibn_a from scratch: its IBN layers learn (their InstanceNorm
    scales leave 1), and the checkpoint extracts."""
    run, feats = tmp_path / "run", tmp_path / "feats"
    code, _, err = cli(
        "train", "--dataset", "synthreid", "--root", synth_tiny, "--model", "resnet18_ibn_a",
        "--pretrained", "none", "--run", run, "--epochs", "1", *FAST_TRAIN,
        "data.height=32", "data.width=16", "--json",
    )  # fmt: skip
    assert code == 0, err
    weights = load_checkpoint(run / "weights" / "last.pt")["state_dict"]
    scales = [weights[k] for k in weights if k.endswith("bn1.IN.weight")]
    assert len(scales) == 6 and all(not torch.equal(s, torch.ones_like(s)) for s in scales)
    features = query_features(cli, run / "weights" / "last.pt", synth_tiny, feats)
    assert features.shape == (48, 512) and np.isfinite(features).all()
