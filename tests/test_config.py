from __future__ import annotations

import pytest

from reidkit.config import Config, apply_overrides, check_config, dump_config, load_config
from reidkit.errors import MissingInputError, UsageError


def test_overrides_are_parsed_by_field_type():
    config = apply_overrides(
        Config(),
        [
            "optim.lr=3e-4",
            "data.batch_size=32",
            "train.deterministic=true",
            "schedule.milestones=[10, 20]",
            "model.pretrained=/w.pth",
            "data.mean=[0.5, 0.5, 0.5]",
            "model.name=osnet_x0_25",
            "schedule.milestones=15",
        ],
    )
    assert config.optim.lr == 3e-4 and isinstance(config.optim.lr, float)
    assert config.data.batch_size == 32 and config.train.deterministic is True
    assert config.schedule.milestones == [15] and config.model.pretrained == "/w.pth"
    assert config.data.mean == [0.5, 0.5, 0.5] and config.model.name == "osnet_x0_25"
    assert apply_overrides(Config(), ["model.bnneck=none"]).model.bnneck is None


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
        ("optimizer.lr=1", "unknown config key 'optimizer.lr'"),
        ("optim=1", "unknown config key 'optim'"),
        ("data.batch_size=3.5", "config key 'data.batch_size' expects int, got '3.5'"),
        ("data.batch_size=many", "config key 'data.batch_size' expects int, got 'many'"),
        ("train.deterministic=2", "config key 'train.deterministic' expects bool, got '2'"),
        ("optim.lr=fast", "config key 'optim.lr' expects float, got 'fast'"),
        ("optim.lr", "override 'optim.lr' is not of the form key=value"),
    ],
)
def test_bad_overrides_are_usage_errors(override, message):
    with pytest.raises(UsageError) as err:
        apply_overrides(Config(), [override])
    assert err.value.message.startswith(message) and err.value.exit_code == 2


def test_yaml_round_trip_then_overrides(tmp_path):
    config = apply_overrides(Config(), ["optim.lr=0.01", "eval.every=2"])
    path = tmp_path / "cfg.yaml"
    path.write_text(dump_config(config))
    loaded = load_config(path, ["data.batch_size=16"])
    assert loaded.optim.lr == 0.01 and loaded.eval.every == 2 and loaded.data.batch_size == 16
    assert (
        loaded.to_dict() == check_config(apply_overrides(config, ["data.batch_size=16"])).to_dict()
    )


def test_bad_files(tmp_path):
    with pytest.raises(MissingInputError):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [1, 2\n")
    with pytest.raises(UsageError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(UsageError, match=r"unknown config key 'optim\.learning_rate'"):
        load_config(wrong)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(UsageError, match="expected a mapping"):
        load_config(tmp_path / "list.yaml")


def test_a_tilde_in_a_path_value_is_the_home_folder(tmp_path, monkeypatch):
    """A shell expands ~ on the command line but not inside key=value or a YAML file."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "cfg.yaml").write_text("model:\n  pretrained: ~/w/r50.pth\n")
    config = load_config(tmp_path / "cfg.yaml", ["data.root=~/data", "data.dataset=~/my.csv"])
    assert config.data.root == str(tmp_path / "data")
    assert config.data.dataset == str(tmp_path / "my.csv")
    assert config.model.pretrained == str(tmp_path / "w" / "r50.pth")
    assert load_config(None, ["data.dataset=market1501"]).data.dataset == "market1501"


def test_what_the_model_declares_fills_the_options_left_unset():
    resnet = load_config(None, [])
    assert (resnet.model.bnneck, resnet.model.last_stride) == (True, 1)  # BoT's
    assert resnet.data.mean == [0.485, 0.456, 0.406] and resnet.data.std == [0.229, 0.224, 0.225]
    torchreid_style = load_config(None, ["model.bnneck=false", "model.last_stride=2"])
    assert (torchreid_style.model.bnneck, torchreid_style.model.last_stride) == (False, 2)
    osnet = load_config(None, ["model.name=osnet_x0_25"])
    assert (osnet.model.bnneck, osnet.model.last_stride) == (None, None)  # it has neither
    vit = load_config(None, ["model.name=timm/vit_small_patch16_224"])
    assert vit.data.mean == [0.5, 0.5, 0.5] and vit.data.std == [0.5, 0.5, 0.5]
    assert load_config(
        None, ["model.name=timm/vit_small_patch16_224", "data.mean=[0.1,0.2,0.3]"]
    ).data.mean == [0.1, 0.2, 0.3]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["model.name=osnet_x0_25", "model.bnneck=true"],
            "model osnet_x0_25 has no option bnneck (its options: none)",
        ),
        (
            ["model.name=timm/convnext_tiny", "model.last_stride=1"],
            "model timm/convnext_tiny has no option last_stride (its options: bnneck, classifier)",
        ),
        (["model.weights=/w.pth"], "config key 'model.weights' is now 'model.pretrained'"),
        (
            ["model.name=osnet_x0_25", "loss.id_loss=cosface"],
            "loss.id_loss=cosface needs a cosine classifier, and model osnet_x0_25 has no "
            "model.classifier option",
        ),
        (
            ["loss.id_loss=circle", "model.classifier=linear"],
            "loss.id_loss=circle needs a cosine classifier, but model.classifier is linear",
        ),
        (
            ["model.classifier=cosine"],
            "loss.id_loss=ce needs a linear classifier, but model.classifier is cosine",
        ),
        (["data.val_ids=-1"], "data.val_ids must be at least 0, got -1"),
    ],
)
def test_an_option_the_model_cannot_honour_is_a_usage_error(overrides, message):
    with pytest.raises(UsageError) as err:
        load_config(None, overrides)
    assert err.value.message == message and err.value.exit_code == 2


def test_a_margin_loss_gets_a_cosine_classifier_and_lists_take_one_item():
    config = load_config(None, ["loss.id_loss=circle", "eval.targets=market1501"])
    assert config.model.classifier == "cosine"
    assert config.eval.targets == ["market1501"]
    assert load_config(None, ["data.sources=[a,b]"]).data.sources == ["a", "b"]
    assert load_config(None, []).model.classifier == "linear"  # the ResNet's default


def test_the_triplet_warmup_follows_the_start():
    """From scratch the triplet term waits for the schedule's warmup (docs/training.md:
    it collapses an embedding that does not rank yet); from pretrained weights it is
    BoT's, on from the first step; given, it is kept."""
    from reidkit.engine.optim import triplet_factor

    scratch = load_config(None, ["model.pretrained=none"])
    assert scratch.loss.triplet_warmup == scratch.schedule.warmup_epochs == 10
    assert [triplet_factor(e, scratch) for e in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0]
    pretrained = load_config(None, [])
    assert pretrained.loss.triplet_warmup == 0 and triplet_factor(0, pretrained) == 1.0
    assert (
        load_config(None, ["model.pretrained=none", "loss.triplet_warmup=3"]).loss.triplet_warmup
        == 3
    )


def test_without_cross_entropy_the_triplet_term_starts_at_full_weight():
    config = load_config(None, ["loss.softmax=0", "model.pretrained=none"])
    assert config.loss.triplet_warmup == 0  # from scratch it would be the lr warmup (10)
    assert load_config(None, ["model.pretrained=none"]).loss.triplet_warmup == 10
    with pytest.raises(UsageError, match=r"loss.triplet_warmup=5 with loss.softmax=0: the "):
        load_config(None, ["loss.softmax=0", "loss.triplet_warmup=5"])
