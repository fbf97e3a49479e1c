"""Adaptation to an unlabelled target (adapt.enabled, reidkit.engine.adapt): a source model
trained on synthreid's tiny preset adapts to synthreid-b's, on pseudo-labels only."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch

from reidkit.models.checkpoint import load_checkpoint

SMALL = [
    "--model", "resnet18", "data.height=64", "data.width=32", "data.batch_size=16",
    "data.num_instances=4", "train.deterministic=true",
]  # fmt: skip
# Cluster Contrast's loss alone; k1 under tiny's 10 images per identity
ADAPT = [
    "adapt.enabled=true", "adapt.k1=8", "loss.triplet=0", "loss.label_smoothing=0",
    "schedule.warmup_epochs=0", "eval.every=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory, cli_module):
    """Both networks' tiny preset, and a source checkpoint trained on network a."""
    from reidkit.data.synth import generate

    root = tmp_path_factory.mktemp("adapt")
    generate(root, "tiny", seed=0, workers=2)
    generate(root, "tiny", seed=0, network="b", workers=2)
    source = root / "source"
    args = ["--dataset", "synthreid", "--root", root, "--run", source, "--epochs", "2"]
    code, _, err = cli_module("train", *args, *SMALL, "model.pretrained=none", "eval.every=0")
    assert code == 0, err
    return root, source / "weights" / "last.pt"


@pytest.fixture(scope="module")
def cli_module():
    """The in-process command line for module-scoped fixtures (output not captured)."""
    from reidkit.cli.app import run

    return lambda *argv: (run([str(a) for a in argv]), "", "")


def adapt(cli, data, run, *extra):
    root, source = data
    args = ["--dataset", "synthreid-b", "--root", root, "--run", run, "--pretrained", source]
    return cli("train", *args, *SMALL, *ADAPT, *extra)


def rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_each_epoch_clusters_the_target_and_records_the_agreement(data, tmp_path, cli):
    code, out, err = adapt(cli, data, tmp_path / "run", "--epochs", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["epochs"] == 2
    recorded = rows(tmp_path / "run")
    for row in recorded:
        clusters, outliers = int(row["clusters"]), int(row["outliers"])
        assert 4 <= clusters <= 160 and 0 <= outliers < 160  # a batch takes 4 clusters
        for key in ("nmi", "ari", "pair_precision", "pair_recall"):
            assert 0.0 < float(row[key]) <= 1.0, key
    assert recorded[1]["synthreid-b/mAP"] and not recorded[0]["synthreid-b/mAP"]
    assert re.search(r"epoch 1: \d+ clusters, \d+ outliers of 160 images; against the true", err)
    saved = load_checkpoint(tmp_path / "run" / "weights" / "last.pt")
    assert saved["config"]["adapt"]["enabled"] and saved["config"]["model"]["neck_feat"] == "after"
    assert len(saved["adapt"]["labels"]) == 160 and saved["adapt"]["epoch"] == 1
    assert saved["adapt"]["centroids"].shape == (int(recorded[1]["clusters"]), 512)
    # the adapted weights are extracted as any others
    feats = tmp_path / "feats"
    root = data[0]
    code, _, err = cli(
        "extract", tmp_path / "run" / "weights" / "last.pt", "--dataset", "synthreid-b",
        "--root", root, "--subsets", "query", "--out", feats,
    )  # fmt: skip
    assert code == 0, err
    from reidkit.features.store import read_features

    assert read_features(feats / "synthreid-b-query.h5").features.shape == (48, 512)


def test_the_targets_identities_never_reach_the_training(data, tmp_path, cli, monkeypatch):
    """The same run with the target's training identities shuffled trains the same
    weights: only the agreement it records changes."""
    from reidkit.engine import evaluation

    assert adapt(cli, data, tmp_path / "plain", "--epochs", "1")[0] == 0
    load = evaluation.load_training_data

    def shuffled(config):
        train, sources = load(config)
        pids = np.random.default_rng(0).permutation([s.pid for s in train.train])
        train.train = [s._replace(pid=int(p)) for s, p in zip(train.train, pids, strict=True)]
        return train, sources

    monkeypatch.setattr(evaluation, "load_training_data", shuffled)
    assert adapt(cli, data, tmp_path / "shuffled", "--epochs", "1")[0] == 0
    a = load_checkpoint(tmp_path / "plain" / "weights" / "last.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "shuffled" / "weights" / "last.pt")["state_dict"]
    for key, tensor in a.items():
        assert torch.equal(tensor, b[key]), key
    (plain,), (mixed,) = rows(tmp_path / "plain"), rows(tmp_path / "shuffled")
    assert plain["clusters"] == mixed["clusters"] and plain["ari"] != mixed["ari"]


def test_adapt_two_then_two_more_equals_four(data, tmp_path, cli):
    """Exact resume: the memory, the epoch's pseudo-labels and the generators come back
    from the checkpoint, so 2 epochs resumed to 4 equal 4 straight, tensor for tensor
    (with Cluster Contrast's sampler and a fixed number of batches per epoch)."""
    fixed = ("data.sampler=pk_cameras", "train.iters_per_epoch=3")
    assert adapt(cli, data, tmp_path / "straight", "--epochs", "4", *fixed)[0] == 0
    assert adapt(cli, data, tmp_path / "split", "--epochs", "2", *fixed)[0] == 0
    code, _, err = cli("resume", tmp_path / "split", "--max-epoch", "4")
    assert code == 0, err
    a = load_checkpoint(tmp_path / "straight" / "weights" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "weights" / "last.pt")
    assert a["step"] == b["step"] == 4 * 3
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    assert torch.equal(a["adapt"]["centroids"], b["adapt"]["centroids"])
    assert a["adapt"]["labels"] == b["adapt"]["labels"]
    timings = ("seconds", "images_per_s")
    untimed = [{k: v for k, v in r.items() if k not in timings} for r in rows(tmp_path / "split")]
    assert [
        {k: v for k, v in r.items() if k not in timings} for r in rows(tmp_path / "straight")
    ] == untimed


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("loss.center=0.0005", "loss.center=0.0005 with adapt.enabled: pseudo-identities change"),
        ("model.neck_feat=before", "model.neck_feat=before with adapt.enabled"),
        ("data.sampler=random", "data.sampler=random with adapt.enabled"),
        ("adapt.eps=1", "adapt.eps must be between"),
        ("adapt.variant=mmt", "adapt.variant: unknown value 'mmt'"),
        ("loss.id_loss=cosface", "loss.id_loss=cosface with adapt.enabled"),
        ("data.val_ids=4", "data.val_ids=4 with adapt.enabled: holding out identities"),
    ],
)
def test_settings_adaptation_cannot_honour_exit_2_before_anything_is_written(
    data, tmp_path, cli, setting, message
):
    code, _, err = adapt(cli, data, tmp_path / "run", setting)
    assert code == 2 and message in err
    assert not (tmp_path / "run").exists()


def test_too_few_clusters_for_a_batch_stop_with_what_to_change(data, tmp_path, cli):
    code, _, err = adapt(cli, data, tmp_path / "run", "adapt.eps=0.000001")
    assert code == 1
    found = re.search(r"error: epoch 1: DBSCAN found (\d+) clusters, and a batch takes 4\b", err)
    assert found and int(found.group(1)) < 4 and "hint: raise adapt.eps" in err


def test_a_stop_inside_an_epoch_resumes_on_that_epochs_pseudo_labels(
    data, tmp_path, cli, monkeypatch
):
    """Stopped by SIGTERM two steps before the end, the run resumes inside its last epoch
    with the checkpoint's pseudo-labels (the straight run's, made at the epoch's start),
    not new ones made from the weights of the stop. (Weights resumed inside an epoch are
    not bit-exact in any run: only epoch boundaries are.)"""
    import os
    import signal

    from reidkit.engine.trainer import Trainer

    assert adapt(cli, data, tmp_path / "straight", "--epochs", "2")[0] == 0
    straight = load_checkpoint(tmp_path / "straight" / "weights" / "last.pt")
    step = Trainer._step

    def stopping(self, images, labels):
        result = step(self, images, labels)
        if self.step == straight["step"] - 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the graceful stop only takes note
        return result

    monkeypatch.setattr(Trainer, "_step", stopping)
    assert adapt(cli, data, tmp_path / "split", "--epochs", "2")[0] == 130
    stopped = load_checkpoint(tmp_path / "split" / "weights" / "last.pt")
    assert stopped["epoch"] == 1 and stopped["batch_in_epoch"] > 0
    monkeypatch.setattr(Trainer, "_step", step)
    code, _, err = cli("resume", tmp_path / "split")
    assert code == 0, err
    resumed = load_checkpoint(tmp_path / "split" / "weights" / "last.pt")
    assert resumed["step"] == straight["step"] and resumed["adapt"]["epoch"] == 1
    assert resumed["adapt"]["labels"] == straight["adapt"]["labels"]
    assert rows(tmp_path / "split")[1]["clusters"] == rows(tmp_path / "straight")[1]["clusters"]


@pytest.mark.parametrize(
    ("name", "dataset", "start", "iters"),
    [
        ("adapt_market_to_msmt17.yaml", "msmt17", "runs/bot/weights/best.pt", 400),
        ("adapt_unsupervised_market1501.yaml", "market1501", "imagenet", 200),
    ],
)
def test_the_adaptation_recipes_cite_cluster_contrast_and_its_settings(name, dataset, start, iters):
    from helpers import REPO

    from reidkit.config import load_config

    text = (REPO / "configs" / name).read_text()
    assert "Cluster Contrast" in text and "alibaba/cluster-contrast-reid" in text
    assert "Published" in text and "mAP" in text
    c = load_config(REPO / "configs" / name)
    assert (c.data.dataset, c.model.pretrained, c.model.name) == (dataset, start, "resnet50")
    a = c.adapt
    assert a.enabled and (a.eps, a.min_samples, a.k1, a.k2) == (0.6, 4, 30, 6)
    assert (a.temperature, a.momentum, a.variant) == (0.05, 0.1, "cluster-contrast")
    assert (c.data.batch_size, c.data.num_instances, c.train.epochs) == (256, 16, 50)
    assert (c.data.sampler, c.train.iters_per_epoch) == ("pk_cameras", iters)
    assert (c.optim.name, c.optim.lr, c.optim.weight_decay) == ("adam", 0.00035, 0.0005)
    assert (c.schedule.name, c.schedule.step_size, c.schedule.gamma) == ("step", 20, 0.1)
    assert (c.loss.triplet, c.loss.label_smoothing, c.model.neck_feat) == (0.0, 0.0, "after")


def test_torchrun_two_cpu_processes_adapt_one_model_with_one_memory(data, tmp_path):
    """Two gloo processes: each extracts half of the images, rank 0 clusters, and both
    apply both batches to their memories; after every epoch the trainer checks that both
    hold the same weights and the same memory (the run fails otherwise)."""
    import subprocess

    from helpers import reidkit_env, torchrun_argv

    root, source = data
    run = tmp_path / "ddp"
    args = ["--dataset", "synthreid-b", "--root", root, "--run-dir", run, "--pretrained", source]
    done = subprocess.run(
        [*torchrun_argv(2, "train", *args, *SMALL, *ADAPT, "--epochs", "2", "--json")],
        env=reidkit_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["epochs"] == 2  # one document: only rank 0 prints
    recorded = rows(run)
    assert len(recorded) == 2 and all(int(r["clusters"]) >= 4 for r in recorded)
    assert recorded[1]["synthreid-b/mAP"]
    saved = load_checkpoint(run / "weights" / "last.pt")
    assert len(saved["adapt"]["labels"]) == 160


def test_camera_centre_clusters_the_features_less_their_cameras_means(
    data, tmp_path, cli, monkeypatch
):
    """adapt.camera_centre: the clustering sees camera-centred features (and the memory
    the plain ones)."""
    from reidkit.data import load_dataset
    from reidkit.engine import pseudo_labels

    seen = []
    centre = pseudo_labels.camera_centred

    def recording(features, cameras):
        seen.append(cameras)
        return centre(features, cameras)

    monkeypatch.setattr(pseudo_labels, "camera_centred", recording)
    assert adapt(cli, data, tmp_path / "plain", "--epochs", "1")[0] == 0
    assert seen == []
    code, _, err = adapt(
        cli, data, tmp_path / "centred", "--epochs", "1", "adapt.camera_centre=true"
    )
    assert code == 0, err
    target = load_dataset("synthreid-b", data[0]).train
    camids = [s.camid for s in target]  # one source: its cameras, however numbered
    assert len(seen) == 1 and len(seen[0]) == len(camids)
    pairs = set(zip(seen[0].tolist(), camids, strict=True))
    assert len(pairs) == len(set(seen[0].tolist())) == len(set(camids)) == 4
    assert rows(tmp_path / "plain")[0]["ari"] != rows(tmp_path / "centred")[0]["ari"]


def test_models_whose_training_features_are_not_the_extracted_ones_are_refused():
    """The memory holds what extract writes (after a BNNeck); a model training several
    features (MGN) or the feature before its BNNeck cannot be compared with it."""
    from types import SimpleNamespace

    from reidkit.engine.adapt import check_adaptable
    from reidkit.errors import UsageError

    with pytest.raises(
        UsageError, match=re.escape("adapt.enabled needs one feature per image; mgn")
    ):
        check_adaptable(SimpleNamespace(metric_features=3), "mgn")
    before = SimpleNamespace(metric_features=1, bnneck=object(), neck_feat="before")
    with pytest.raises(UsageError, match="trains on its feature before the BNNeck"):
        check_adaptable(before, "timm/resnet18")
    check_adaptable(SimpleNamespace(metric_features=1, bnneck=object(), neck_feat="after"), "x")
    check_adaptable(SimpleNamespace(metric_features=1, bnneck=None), "no neck")


def test_a_generated_target_is_not_downloaded(cli, tmp_path):
    code, _, err = cli("datasets", "download", "synthreid-b", "--root", tmp_path)
    assert code == 2 and "synthreid-b is generated, not downloaded" in err
    assert "hint: reidkit datasets synth --root DIR --network b" in err
