"""The ResNet family's options from the published re-ID models: non-local blocks (AGW,
fast-reid: names, places, inner width 1), GeM pooling (fixed or learned p) and fast-reid's
stem pooling, against tests/resnet_reference.py (written from the authors' code)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import FAST_TRAIN, counted, query_features
from published import ibn_imagenet_file
from resnet_reference import NON_LOCAL, resnet_features, resnet_state

from reidkit.errors import UsageError
from reidkit.models import create_model, load_weights
from reidkit.models.checkpoint import load_checkpoint


def relative_error(got, want) -> float:
    return ((got - want).abs().max() / want.abs().max()).item()


def trunk_keys(state) -> dict:
    return {k: v.shape for k, v in state.items() if not k.startswith(("fc.", "classifier."))}


@pytest.mark.parametrize(("depth", "design"), [(50, None), (101, "a")])
def test_non_local_blocks_have_fast_reids_names_and_shapes(depth, design):
    name = f"resnet{depth}" + (f"_ibn_{design}" if design else "")
    model = create_model(name, 10, bnneck=False, last_stride=2, non_local=True)
    ours = trunk_keys(model.state_dict())
    theirs = trunk_keys(resnet_state(depth, design, non_local=True))
    assert counted(ours) == sorted(theirs) and all(ours[k] == theirs[k] for k in theirs)
    blocks = {k.split(".")[0] + "." + k.split(".")[1] for k in theirs if k.startswith("NL_")}
    assert len(blocks) == sum(NON_LOCAL[depth])  # R50: 2 + 3, R101: 2 + 9
    assert ours["NL_3.0.theta.weight"] == (1, 1024, 1, 1)  # the published inner width, 1


@pytest.mark.parametrize(
    ("depth", "design", "options", "gem_p"),
    [
        (50, None, {"non_local": True}, None),
        (50, "a", {"non_local": True, "pooling": "gem"}, 3.0),  # AGW on R50-ibn
        (101, "b", {"non_local": True, "pooling": "gem", "gem_p": 4.5}, 4.5),
        (18, None, {"pooling": "gem", "stem_pool": "ceil"}, 3.0),
        (50, None, {"stem_pool": "ceil", "last_stride": 1}, None),
    ],
)
def test_the_options_give_the_reference_features(tmp_path, depth, design, options, gem_p):
    """Weights in the authors' names load whole, and the features are the reference's."""
    non_local = options.get("non_local", False)
    state = resnet_state(depth, design, seed=depth, non_local=non_local)
    reference = {
        "last_stride": options.get("last_stride", 2), "non_local": non_local, "gem_p": gem_p,
        "stem_pool": options.get("stem_pool", "padding"),
    }  # fmt: skip
    calibration = torch.randn(8, 3, 80, 48, generator=torch.Generator().manual_seed(0))
    resnet_features(state, calibration, depth, design, calibrate=True, **reference)
    torch.save(state, tmp_path / "weights.pth")
    name = f"resnet{depth}" + (f"_ibn_{design}" if design else "")
    model = create_model(name, 1000, bnneck=False, **{"last_stride": 2, **options}).eval()
    report = load_weights(model, tmp_path / "weights.pth")
    assert sorted(report["skipped"]) == ["fc.bias", "fc.weight"]
    assert sorted(report["missing"]) == ["classifier.bias", "classifier.weight"]
    x = torch.randn(2, 3, 80, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model.features(x)
        want = resnet_features(state, x, depth, design, **reference)
    assert torch.isfinite(want).all() and want.abs().max() > 0.1
    assert relative_error(got, want) < 5e-5  # float32 sums in another order (measured 2e-5)
    if options.get("stem_pool") == "ceil":  # the other stem gives other features
        other = resnet_features(state, x, depth, design, **{**reference, "stem_pool": "padding"})
        assert relative_error(other, want) > 1e-3


def test_a_new_non_local_block_starts_as_the_identity():
    """Its BatchNorm starts at zero (as fast-reid's does), so adding the blocks to a trained
    trunk leaves its features as they were until they learn."""
    torch.manual_seed(0)
    plain = create_model("resnet50", 10).eval()
    with_blocks = create_model("resnet50", 10, non_local=True).eval()
    report = with_blocks.load_state_dict(plain.state_dict(), strict=False)
    assert report.unexpected_keys == [] and all(k.startswith("NL_") for k in report.missing_keys)
    assert torch.equal(with_blocks.NL_2[0].W[1].weight, torch.zeros(512))
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.allclose(with_blocks(x), plain(x), atol=1e-6)


def test_gem_p_is_a_parameter_only_when_learned():
    learned = create_model("resnet18", 10, pooling="gem", gem_learnable=True)
    fixed = create_model("resnet18", 10, pooling="gem", gem_p=2.0)
    assert learned.state_dict()["pool.p"].tolist() == [3.0]  # fast-reid's start
    assert not any(k.startswith("pool.") for k in fixed.state_dict())
    x = torch.rand(4, 3, 64, 32)
    learned.train()(x)[0].sum().backward()
    assert learned.pool.p.grad is not None and learned.pool.p.grad.abs().item() > 0


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("resnet18", {"non_local": True}, "model.non_local: the published models place"),
        ("resnet50", {"gem_p": 4.0}, "model.gem_p is for model.pooling=gem"),
        ("resnet50", {"gem_learnable": True}, "model.gem_learnable is for model.pooling=gem"),
        ("resnet50", {"pooling": "max"}, "model.pooling: choose from avg, gem, got 'max'"),
        ("resnet50", {"pooling": "gem", "gem_p": 0}, "model.gem_p must be positive, got 0"),
        ("resnet50", {"stem_pool": "same"}, "model.stem_pool: choose from padding, ceil"),
    ],
)
def test_options_a_model_cannot_honour_are_refused(name, options, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        create_model(name, 10, **options)


def test_the_cli_refuses_non_local_blocks_where_none_are_published(cli, synth_tiny, tmp_path):
    code, _, err = cli(
        "train", "--dataset", "synthreid", "--root", synth_tiny, "--model", "resnet18",
        "--run", tmp_path / "run", *FAST_TRAIN, "model.non_local=true",
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2 and lines[0].startswith("error: model.non_local: the published models")
    assert not (tmp_path / "run" / "weights").exists()


def test_agw_on_r50_ibn_trains_its_blocks_and_p_and_extracts(
    cli, synth_tiny, tmp_path, monkeypatch
):
    """One epoch of the AGW trunk (R50-ibn-a, non-local blocks, GeM with a learned p) from
    IBN-Net's ImageNet file (a stand-in), which has neither the blocks nor p: they start as
    initialised, as in fast-reid, where the rest loads; at 32x16 the blocks' BatchNorm
    leaves zero, p leaves 3, and it extracts."""
    run, feats = tmp_path / "run", tmp_path / "feats"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    imagenet = tmp_path / "torch" / "hub" / "checkpoints" / "resnet50_ibn_a-d9d0bb7b.pth"
    state = ibn_imagenet_file(50, "a", imagenet)
    code, _, err = cli(
        "train", "--dataset", "synthreid", "--root", synth_tiny, "--model", "resnet50_ibn_a",
        "--run", run, "--epochs", "1", *FAST_TRAIN, "model.pretrained=imagenet",
        "data.height=32", "data.width=16", "model.non_local=true", "model.pooling=gem",
        "model.gem_learnable=true", "--json",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads((run / "env.json").read_text())["pretrained"]
    # the file's all but fc; new: 5 blocks x 12 tensors, p, the BNNeck's 4 and the classifier
    assert (record["used"], record["skipped"], record["missing"]) == (len(state) - 2, 2, 66)
    checkpoint = load_checkpoint(run / "weights" / "last.pt")
    weights = checkpoint["state_dict"]
    assert checkpoint["model"]["kwargs"]["non_local"] is True
    scales = [weights[k] for k in weights if k.startswith("NL_") and k.endswith("W.1.weight")]
    assert len(scales) == 5 and all(s.abs().max() > 0 for s in scales)
    assert weights["pool.p"].item() != 3.0
    features = query_features(cli, run / "weights" / "last.pt", synth_tiny, feats)
    assert features.shape == (48, 2048) and np.isfinite(features).all()


def test_neck_feat_after_gives_the_metric_losses_the_feature_after_the_bnneck():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 64, 32)
    for neck_feat in ("before", "after"):
        model = create_model("resnet18", 5, neck_feat=neck_feat).train()
        _, metric = model(x)
        pooled = model.features(x)
        want = model.bnneck(pooled) if neck_feat == "after" else pooled
        assert torch.allclose(metric, want) and not torch.allclose(pooled, model.bnneck(pooled))
    with pytest.raises(UsageError, match=r"model\.neck_feat=after needs the BNNeck"):
        create_model("resnet18", 5, neck_feat="after", bnneck=False)
    with pytest.raises(UsageError, match=r"model\.neck_feat: unknown value 'middle'"):
        create_model("resnet18", 5, neck_feat="middle")


def test_without_the_identity_loss_a_bnneck_the_triplet_sees_still_learns():
    from reidkit.engine.replicas import freeze_unused_head

    for neck_feat, frozen in (("before", ["bnneck.weight", "classifier.weight"]),
                              ("after", ["classifier.weight"])):  # fmt: skip
        model = create_model("resnet18", 5, neck_feat=neck_feat)
        freeze_unused_head(model)
        # the BNNeck's shift is frozen by design (BoT)
        assert sorted(n for n, p in model.named_parameters() if not p.requires_grad) == sorted(
            [*frozen, "bnneck.bias"]
        )
