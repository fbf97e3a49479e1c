"""The published recipes in configs/: each cites its source and target, parses, and takes
a training step on tiny data with what makes it that recipe in effect."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import REPO

from reidkit.config import load_config
from reidkit.engine.loaders import train_loader
from reidkit.engine.trainer import Trainer

RECIPES = {
    "bot_r50_market1501.yaml": "Luo et al., CVPR Workshops 2019",
    "torchreid_osnet_x1_0_market1501_softmax.yaml": "im_osnet_x1_0_softmax_256x128_amsgrad",
    "sbs_r50_market1501.yaml": "configs/Base-SBS.yml",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from reidkit.data.synth import generate

    root = tmp_path_factory.mktemp("recipes")
    generate(root, "tiny", seed=0, workers=2)
    return root


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_cites_its_source_and_target(name):
    text = (REPO / "configs" / name).read_text()
    assert RECIPES[name] in text
    assert "Target" in text and "rank-1" in text and "mAP" in text
    config = load_config(REPO / "configs" / name)
    assert config.data.dataset == "market1501"


def one_step(tiny, tmp_path, name):
    k = load_config(REPO / "configs" / name).data.num_instances
    config = load_config(
        REPO / "configs" / name,
        [
            "data.dataset=synthreid", f"data.root={tiny}", "data.height=64", "data.width=32",
            f"data.batch_size={2 * k}", "model.pretrained=none", "train.amp=off",
            "train.device=cpu", "data.workers=0",
        ],
    )  # fmt: skip
    (tmp_path / "run").mkdir()
    trainer = Trainer(config, tmp_path / "run")
    trainer._freeze(trainer.epoch < config.train.freeze_base_epochs)
    _, loader = train_loader(trainer.dataset.train, config, rank=0, world=1, device="cpu")
    images, labels = next(iter(loader))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    loss, parts, _ = trainer._step(images, labels)
    assert math.isfinite(loss) and loss > 0
    return trainer, parts, before


def test_bot_recipe_step(tiny, tmp_path):
    trainer, parts, before = one_step(tiny, tmp_path, "bot_r50_market1501.yaml")
    assert set(parts) >= {"ce", "triplet", "center"} and parts["center"] > 0
    assert trainer.center_optimizer.param_groups[0]["lr"] == 0.5
    assert trainer.model.layer4[0].conv2.stride == (1, 1) and trainer.model.bnneck is not None
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3.5e-5)  # warmup: 0.1x
    assert not torch.equal(before["layer1.0.conv1.weight"], trainer.model.layer1[0].conv1.weight)


def test_torchreid_osnet_recipe_step(tiny, tmp_path):
    trainer, parts, before = one_step(
        tiny, tmp_path, "torchreid_osnet_x1_0_market1501_softmax.yaml"
    )
    assert "triplet" not in parts and trainer.config.data.sampler == "random"
    assert trainer.optimizer.defaults["amsgrad"] is True
    assert trainer.optimizer.param_groups[-1]["lr"] == pytest.approx(0.0015)
    # epoch 1 of 10 with the base frozen: only the classifier moved
    assert torch.equal(before["conv1.0.weight"], trainer.model.conv1[0].weight)
    assert not torch.equal(before["classifier.weight"], trainer.model.classifier.weight)


def test_sbs_recipe_step(tiny, tmp_path):
    from reidkit.models.head import CosineClassifier

    trainer, parts, before = one_step(tiny, tmp_path, "sbs_r50_market1501.yaml")
    assert isinstance(trainer.model.classifier, CosineClassifier)
    assert trainer.loss.id_loss == "circle" and trainer.loss.soft_margin
    assert parts["triplet"] > 0 and parts["ce"] > 0
    assert (trainer.loss.id_scale, trainer.loss.id_margin) == (64.0, 0.35)
    assert torch.equal(before["layer1.0.conv1.weight"], trainer.model.layer1[0].conv1.weight)
