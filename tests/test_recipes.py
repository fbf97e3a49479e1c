"""The published recipes in configs/: each cites its source and target, parses, and takes
a training step on tiny data with what makes it that recipe in effect."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import REPO

from reidkit.config import load_config
from reidkit.engine.loaders import train_loader
from reidkit.engine.trainer import Trainer

RECIPES = {
    "bot_r50_market1501.yaml": "Luo et al., CVPR Workshops 2019",
    "torchreid_osnet_x1_0_market1501_softmax.yaml": "im_osnet_x1_0_softmax_256x128_amsgrad",
    "sbs_r50_market1501.yaml": "configs/Market1501/sbs_R50.yml",
    "sbs_r50ibn_market1501.yaml": "configs/Market1501/sbs_R50-ibn.yml",
    "agw_r50_market1501.yaml": "configs/Market1501/AGW_R50.yml",
    "mgn_r50ibn_market1501.yaml": "configs/Market1501/mgn_R50-ibn.yml",
    "bot_r50ibn_market1501.yaml": "configs/Market1501/bagtricks_R50-ibn.yml",
    "pcb_p6_market1501.yaml": 'Sun et al., "Beyond Part Models',
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


def one_step(tiny, tmp_path, name, height=64):
    k = load_config(REPO / "configs" / name).data.num_instances
    config = load_config(
        REPO / "configs" / name,
        [
            "data.dataset=synthreid", f"data.root={tiny}", f"data.height={height}",
            "data.width=32", f"data.batch_size={2 * k}", "model.pretrained=none",
            "train.amp=off", "train.device=cpu", "data.workers=0",
        ],
    )  # fmt: skip
    (tmp_path / "run").mkdir()
    trainer = Trainer(config, tmp_path / "run")
    trainer._freeze(trainer._frozen_now())
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


def frozen_for_the_step(before, after, head):
    """The step left every tensor outside ``head`` as it was, BatchNorm statistics
    included, and moved some inside it."""
    trunk = [k for k in before if not k.startswith(head) and not k.endswith("batches_tracked")]
    moved = [k for k in before if k.startswith(head) and not torch.equal(before[k], after[k])]
    return all(torch.equal(before[k], after[k]) for k in trunk) and bool(moved)


@pytest.mark.parametrize("name", ["sbs_r50_market1501.yaml", "sbs_r50ibn_market1501.yaml"])
def test_sbs_recipe_step(tiny, tmp_path, name):
    from reidkit.models.head import CosineClassifier
    from reidkit.models.pooling import GeM

    trainer, parts, before = one_step(tiny, tmp_path, name)
    model = trainer.model
    assert isinstance(model.classifier, CosineClassifier) and model.neck_feat == "after"
    assert trainer.loss.id_loss == "circle" and trainer.loss.soft_margin
    assert parts["triplet"] > 0 and parts["ce"] > 0
    assert (trainer.loss.id_scale, trainer.loss.id_margin) == (64.0, 0.35)
    assert len(model.NL_2) == 2 and len(model.NL_3) == 3
    assert isinstance(model.pool, GeM) and isinstance(model.pool.p, torch.nn.Parameter)
    assert ("layer1.0.bn1.IN.weight" in before) == name.startswith("sbs_r50ibn")
    assert trainer.config.data.autoaugment == 0.1
    # iteration 1 of fast-reid's 2000 of warmup and 1000 with the trunk frozen, BN in eval
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3.5e-5)
    assert frozen_for_the_step(before, model.state_dict(), ("bnneck.", "classifier.", "pool."))


def test_agw_recipe_step(tiny, tmp_path):
    from reidkit.losses.triplet import weighted_pairs

    trainer, _, before = one_step(tiny, tmp_path, "agw_r50_market1501.yaml")
    model = trainer.model
    assert len(model.NL_2) == 2 and model.pool.p == 3.0  # GeM, p fixed
    assert trainer.loss.pairs is weighted_pairs and trainer.loss.soft_margin
    assert model.neck_feat == "before" and trainer.loss.id_loss == "ce"
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3.5e-5)
    assert not torch.equal(before["layer1.0.conv1.weight"], model.layer1[0].conv1.weight)


def test_mgn_recipe_step(tiny, tmp_path):
    trainer, parts, before = one_step(tiny, tmp_path, "mgn_r50ibn_market1501.yaml", height=80)
    assert type(trainer.model).__name__ == "MGN" and "backbone.6.bn1.IN.weight" in before
    assert trainer.loss.id_loss == "circle" and parts["triplet"] > 0
    heads = tuple(f"{h}_head." for h in ("b1", "b2", "b3", "b21", "b22", "b31", "b32", "b33"))
    # fast-reid freezes backbone, b1, b2 and b3: everything but the heads
    assert frozen_for_the_step(before, trainer.model.state_dict(), heads)


def test_bot_r50ibn_recipe_step(tiny, tmp_path):
    trainer, parts, before = one_step(tiny, tmp_path, "bot_r50ibn_market1501.yaml")
    assert "layer1.0.bn1.IN.weight" in before and "center" not in parts
    assert trainer.loss.margin == 0.3 and not trainer.loss.soft_margin
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3.5e-5)


def test_pcb_recipe_step(tiny, tmp_path):
    trainer, parts, _ = one_step(tiny, tmp_path, "pcb_p6_market1501.yaml")
    assert type(trainer.model).__name__ == "PCB" and "triplet" not in parts
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.01, 0.1])
    assert type(trainer.optimizer).__name__ == "SGD"


def test_autoaugment_changes_about_the_stated_share_of_images():
    """torchvision's AutoAugment, with probability 0.1 as in the SBS and MGN recipes: of 600
    images, about 60 come out changed (a few of its operations can leave one unchanged)."""
    from PIL import Image

    from reidkit.config import load_config
    from reidkit.data.transforms import train_transform

    overrides = ["data.flip=0", "data.pad=0", "data.erasing=0", "data.height=32", "data.width=16"]
    data = load_config(REPO / "configs" / "sbs_r50ibn_market1501.yaml", overrides).data
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 16, 3), dtype=np.uint8))
    transform = train_transform(data)
    plain = train_transform(load_config(None, [*overrides, "data.autoaugment=0"]).data)(image)
    torch.manual_seed(0)
    changed = sum(not torch.equal(transform(image), plain) for _ in range(600))
    assert 35 <= changed <= 75, changed  # binomial(600, 0.1): 60 +- 7.3


def test_iteration_warmup_and_freeze_follow_fast_reids_steps(tiny, tmp_path):
    """warmup_iters=4 and freeze_base_iters=2 over an epoch of 7 steps: the rate of step i
    is 0.1 + 0.9 i / 4 of the base until step 4, then the base; the trunk stays as it was
    for steps 0 and 1, its BatchNorm statistics too, and moves from step 2."""
    config = load_config(
        None,
        [
            "data.dataset=synthreid", f"data.root={tiny}", "data.height=64", "data.width=32",
            "data.batch_size=16", "model.name=resnet18", "model.pretrained=none",
            "train.device=cpu", "data.workers=0", "train.epochs=1", "eval.every=0",
            "schedule.warmup_epochs=0", "schedule.warmup_iters=4", "schedule.warmup_factor=0.1",
            "train.freeze_base_iters=2", "optim.lr=0.001",
        ],
    )  # fmt: skip
    (tmp_path / "run").mkdir()
    trainer = Trainer(config, tmp_path / "run")
    rates, trunk, step = [], [], trainer._step

    def recorded(images, labels):
        result = step(images, labels)
        rates.append(trainer.optimizer.param_groups[-1]["lr"])
        bn = trainer.model.layer1[0].bn1
        trunk.append((trainer.model.conv1.weight.clone(), bn.running_mean.clone()))
        return result

    start = (trainer.model.conv1.weight.clone(), trainer.model.layer1[0].bn1.running_mean.clone())
    trainer._step = recorded
    trainer.fit()
    assert rates == pytest.approx([1e-3 * (0.1 + 0.9 * i / 4) for i in range(4)] + [1e-3] * 3)
    same = [all(torch.equal(a, b) for a, b in zip(start, t, strict=True)) for t in trunk]
    assert same == [True, True, False, False, False, False, False]


def test_delayed_cosine_is_fast_reids(tmp_path):
    """schedule.delay_epochs=30 of 60: the rate of each epoch equals torch's
    CosineAnnealingLR(T_max=30, eta_min) stepped after each epoch from the 30th on, as
    fast-reid's LRScheduler hook steps it."""
    from reidkit.engine.optim import lr_factor

    config = load_config(
        None,
        ["schedule.name=cosine", "schedule.warmup_epochs=0", "schedule.delay_epochs=30",
         "schedule.min_lr=7e-7", "optim.lr=3.5e-4", "train.epochs=60"],
    )  # fmt: skip
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=3.5e-4)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=30, eta_min=7e-7)
    theirs = []
    for epoch in range(60):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if epoch + 1 > 30:  # after_epoch: next_epoch > delay_epochs
            cosine.step()
    ours = [3.5e-4 * lr_factor(epoch, config) for epoch in range(60)]
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    assert ours[:31] == [3.5e-4] * 31 and ours[59] < 1e-5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["schedule.name=multistep", "schedule.delay_epochs=5"],
         "schedule.delay_epochs is for the cosine schedule, not multistep"),
        (["schedule.name=cosine", "schedule.warmup_epochs=10", "schedule.delay_epochs=5"],
         "schedule.delay_epochs=5 ends inside the warmup (schedule.warmup_epochs=10): it "
         "would delay nothing"),
        (["schedule.name=cosine", "schedule.delay_epochs=60", "train.epochs=60"],
         "schedule.delay_epochs=60 leaves no epoch of the 60 (train.epochs) to decay in"),
        (["schedule.warmup_iters=100"],  # warmup_epochs is 10 by default
         "schedule.warmup_iters=100 and schedule.warmup_epochs=10: choose one warmup"),
        (["train.freeze_base_iters=10", "train.freeze_base_epochs=1"],
         "train.freeze_base_iters=10 and train.freeze_base_epochs=1: choose one"),
    ],
)  # fmt: skip
def test_schedules_that_would_not_do_what_they_say_are_refused(overrides, message):
    from reidkit.errors import UsageError

    with pytest.raises(UsageError) as err:
        load_config(None, overrides)
    assert err.value.message == message


def test_a_freeze_with_nothing_left_to_train_is_refused(tiny, tmp_path):
    from reidkit.errors import UsageError

    config = load_config(
        None,
        [f"data.root={tiny}", "model.name=resnet18", "model.pretrained=none",
         "loss.softmax=0", "train.freeze_base_iters=5", "train.device=cpu"],
    )  # fmt: skip
    with pytest.raises(UsageError, match=r"loss\.softmax=0 leaves nothing of resnet18's new"):
        Trainer(config, tmp_path / "run")
