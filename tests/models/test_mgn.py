"""MGN: fast-reid's names, shapes and test feature (tests/mgn_reference.py, written from
its code, not from reidkit's), its losses, and a run that trains, extracts and refuses what
it cannot honour."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import FAST_TRAIN, counted, query_features
from mgn_reference import FEATURE_ORDER, mgn_feature, mgn_shapes
from resnet_reference import resnet_state

from reidkit.engine.replicas import freeze_unused_head
from reidkit.errors import UsageError
from reidkit.losses import ReIDLoss
from reidkit.losses.margin import margin_logits
from reidkit.losses.triplet import MINING, triplet_from_pairs
from reidkit.models import create_model, load_weights
from reidkit.models.checkpoint import load_checkpoint


@pytest.mark.parametrize("design", [None, "a"])
def test_mgn_has_fast_reids_names_order_and_shapes(design):
    name = "mgn_resnet50_ibn_a" if design else "mgn_resnet50"
    own = create_model(name, 751).state_dict()
    theirs = mgn_shapes(resnet_state(50, design, classes=1), 751)
    assert counted(own) == sorted(theirs)
    assert [k for k in own if k in theirs] == list(theirs)  # fast-reid's order
    assert all(tuple(own[k].shape) == shape for k, shape in theirs.items())


@pytest.mark.parametrize(("design", "last_stride"), [(None, 1), ("a", 2)])
def test_an_imagenet_resnet_fills_every_branch_and_gives_the_reference_feature(design, last_stride):
    """A ResNet-50 file (torchvision's or IBN-Net's names) loads into the backbone and each
    branch's copy of layer3[1:] and layer4; the test feature is fast-reid's."""
    resnet = resnet_state(50, design, seed=3)
    x = torch.randn(2, 3, 96, 32, generator=torch.Generator().manual_seed(1))
    resnet_map_input = x.clone()
    from resnet_reference import resnet_map

    resnet_map(resnet, resnet_map_input, 50, design, last_stride=1, calibrate=True)
    name = "mgn_resnet50_ibn_a" if design else "mgn_resnet50"
    model = create_model(name, 10, last_stride=last_stride).eval()
    report = load_weights(model, resnet, may_miss=[f"{h}_head" for h in FEATURE_ORDER])
    heads = {k: v for k, v in model.state_dict().items() if "_head." in k}
    assert report["skipped"] == ["fc.weight", "fc.bias"]
    assert sorted(report["missing"]) == counted(heads)  # the heads, new; the rest loaded
    with torch.no_grad():
        for p in (v for k, v in model.named_parameters() if k.endswith("pool_layer.p")):
            p.uniform_(2.0, 4.0)  # learned p, one per head
        got = model(x)
    heads = {k: v for k, v in model.state_dict().items() if "_head." in k}
    want = mgn_feature(resnet, heads, x, design, last_stride)
    assert got.shape == (2, 2048) and want.abs().max() > 0.1
    # exact without IBN; IBN-a's instance norms over 6x2 maps round differently: 3e-5
    assert ((got - want).abs().max() / want.abs().max()).item() < (1e-4 if design else 1e-6)


def test_the_losses_average_the_heads_and_the_triplet_features():
    """Circle loss on each of the eight heads' cosines, averaged (fast-reid: x 0.125 each);
    soft-margin hard triplets on the five features, averaged (x 0.2 each)."""
    torch.manual_seed(0)
    model = create_model("mgn_resnet50", 4, classifier="cosine").train()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    logits, metric = model(torch.randn(8, 3, 96, 32))
    assert logits.shape == (8, 8, 4) and [f.shape[1] for f in metric] == [256] * 3 + [512, 768]
    assert logits.abs().max() <= 1 + 1e-6  # cosines: the margin loss scales them
    loss = ReIDLoss(softmax=1, triplet=1, margin=0.0, soft_margin=True, id_loss="circle",
                    id_scale=64, id_margin=0.35, label_smoothing=0.1)  # fmt: skip
    total, parts = loss(logits, metric, labels)
    ce = torch.stack([
        torch.nn.functional.cross_entropy(
            margin_logits(logits[:, h], labels, "circle", 64, 0.35), labels, label_smoothing=0.1
        )
        for h in range(8)
    ]).mean()  # fmt: skip
    tri = torch.stack(
        [triplet_from_pairs(MINING["hard"](f, labels), 0.0, True) for f in metric]
    ).mean()
    assert parts["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert parts["triplet"].item() == pytest.approx(tri.item(), rel=1e-5)
    assert total.item() == pytest.approx((ce + tri).item(), rel=1e-5)


def test_without_the_identity_loss_only_the_classifier_weights_freeze():
    model = create_model("mgn_resnet50", 4)
    freeze_unused_head(model)
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    bias = sorted(f"{h}_head.bottleneck.1.bias" for h in FEATURE_ORDER)  # frozen as fast-reid's
    assert frozen == sorted(bias + [f"{h}_head.weight" for h in FEATURE_ORDER])
    pcb = create_model("pcb_p6", 4)
    freeze_unused_head(pcb)
    assert {n.split(".")[0] for n, p in pcb.named_parameters() if not p.requires_grad} == {
        "classifier",
        "conv5",  # the full stripes' metric feature comes before the reduction
    }


def test_mgn_trains_and_extracts_and_refuses_a_center_loss(cli, synth_tiny, tmp_path):
    run = tmp_path / "run"
    # the trunk frozen: the heads learn, and the trunk's backward pass would double the time
    args = ["train", "--dataset", "synthreid", "--root", synth_tiny, "--model", "mgn_resnet50",
            "--run", run, "--epochs", "1", *FAST_TRAIN, "loss.id_loss=circle",
            "loss.soft_margin=true", "optim.lr=0.00035", "--json",
            "train.freeze_base_epochs=1"]  # fmt: skip
    code, _, err = cli(*args, "loss.center=0.0005", "data.height=80")
    assert code == 2 and not run.exists()
    assert "error: loss.center needs one feature per image; mgn_resnet50 trains 5" in err
    code, _, err = cli(*args)  # a 4-row map, which torch.chunk cuts into 2 parts, not 3
    assert code == 2 and not run.exists()
    assert "error: MGN cuts a map 4 rows high into 2 parts, not 3: images 64 pixels high" in err
    code, _, err = cli(*args, "data.height=80")  # a 5-row map: 2, 2 and 1 rows
    assert code == 0, err
    weights = load_checkpoint(run / "weights" / "last.pt")["state_dict"]
    p = [weights[f"{h}_head.pool_layer.p"].item() for h in FEATURE_ORDER]
    assert all(v != 3.0 for v in p)  # each head learns its own p
    assert all(torch.equal(weights[f"{h}_head.bottleneck.1.bias"], torch.zeros(256))
               for h in FEATURE_ORDER)  # fmt: skip
    features = query_features(cli, run / "weights" / "last.pt", synth_tiny, tmp_path / "feats")
    assert features.shape == (48, 2048) and np.isfinite(features).all()


def test_a_state_dict_extracts_with_its_classifiers_left_out(cli, synth_tiny, tmp_path):
    """A state dict of a 751-class MGN (as fast-reid's later code saves one) given with
    --model loads whole: the model is built with the file's 751 identities, so its eight
    classifier weights load too; images too low for three parts are refused before any is
    read."""
    torch.manual_seed(0)
    model = create_model("mgn_resnet50", 751)
    torch.save(model.state_dict(), tmp_path / "mgn.pth")
    args = ["extract", "--model", "mgn_resnet50", "--weights", tmp_path / "mgn.pth",
            "--dataset", "synthreid", "--root", synth_tiny, "--subsets", "query",
            "--json"]  # fmt: skip
    code, _, err = cli(*args, "--height", "64", "--width", "32", "--out", tmp_path / "low")
    assert code == 2 and "error: MGN cuts a map 4 rows high into 2 parts, not 3" in err
    assert not (tmp_path / "low").exists()
    code, out, err = cli(*args, "--height", "80", "--width", "32", "--out", tmp_path / "f")
    assert code == 0, err
    weights = json.loads(out)["weights"]
    assert weights["missing_keys"] == [] and weights["skipped_keys"] == []
    assert weights["used"] == sum(not k.endswith("num_batches_tracked") for k in model.state_dict())


def test_avg_pooling_learns_no_p_and_refuses_learning_one():
    model = create_model("mgn_resnet50", 3, pooling="avg")
    assert not any(n.endswith("pool_layer.p") for n, _ in model.named_parameters())
    with pytest.raises(UsageError, match=r"model\.gem_learnable is for model\.pooling=gem"):
        create_model("mgn_resnet50", 3, pooling="avg", gem_learnable=True)
