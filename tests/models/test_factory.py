from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from published import torchvision_imagenet_file
from torchvision.models import resnet50

from reidkit.errors import DataError, MissingInputError, UnknownNameError, UsageError
from reidkit.models import create_model, list_models, load_weights, model_distance, model_info


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_and_runs(name):
    torch.manual_seed(0)
    size = (80, 32) if name.startswith("mgn") else (64, 32)  # MGN's 3 parts: 5 rows or more
    model = create_model(name, num_classes=7, image_size=size)
    x = torch.randn(2, 3, *size)
    model.train()
    logits, feature = model(x)
    # a classifier per part (PCB) or head (MGN), whose features the triplet loss sees apart
    heads = getattr(model, "parts", None) or (8 if name.startswith("mgn") else None)
    assert logits.shape == ((2, heads, 7) if heads else (2, 7))
    if name.startswith("mgn"):
        assert [f.shape for f in feature] == [(2, 256)] * 3 + [(2, 512), (2, 768)]
    else:
        assert feature.shape == (2, model.feature_dim)
    model.eval()
    with torch.no_grad():
        embedding = model(x)
    assert embedding.shape == (2, model.feature_dim) and torch.isfinite(embedding).all()


def test_registry_names_and_suggestions():
    widths = ["x1_0", "x0_75", "x0_5", "x0_25"]
    assert list_models("osnet_x*") == [f"osnet_{w}" for w in widths]
    assert list_models("osnet_ain*") == [f"osnet_ain_{w}" for w in widths]
    assert list_models("osnet*") == [f"osnet_{w}" for w in widths] + list_models("osnet_[ia]*")
    assert {"resnet18", "resnet50", "resnet152"} <= set(list_models("resnet*"))
    with pytest.raises(UnknownNameError, match="did you mean 'osnet_x0_25'"):
        create_model("osnet_x025", num_classes=3)


def test_model_info_counts_parameters_without_the_classifier():
    info = model_info("resnet50")
    backbone = resnet50(weights=None)
    expected = sum(p.numel() for n, p in backbone.named_parameters() if not n.startswith("fc"))
    assert info["params"] == expected + 2 * 2048  # plus the BNNeck's scale and shift
    assert info["feature_dim"] == 2048 and 7 < info["gflops"] < 9


def test_models_list_command(cli):
    code, out, _ = cli("models", "list", "osnet*", "--json")
    models = {m["name"]: m for m in json.loads(out)["models"]}
    assert code == 0 and list(models) == list_models("osnet*")
    assert models["osnet_x1_0"]["feature_dim"] == 512
    assert models["osnet_x0_25"]["params"] < models["osnet_x1_0"]["params"]


def test_torchvision_weights_load_non_strictly(tmp_path):
    # torchvision's file as published: no BatchNorm counters, ImageNet's fc
    source = torchvision_imagenet_file(50, tmp_path / "resnet50-0676ba61.pth", seed=1)
    model = create_model("resnet50", num_classes=5)
    # the BNNeck is new for ImageNet weights, as the classifier is: a start for training
    report = load_weights(
        model, tmp_path / "resnet50-0676ba61.pth", may_miss=("bnneck", "classifier")
    )
    assert "conv1.weight" in report["used"] and "layer4.2.bn3.running_mean" in report["used"]
    assert len(report["used"]) == 265 and sorted(report["skipped"]) == ["fc.bias", "fc.weight"]
    assert report["missing"] == ["bnneck.weight", "bnneck.bias", "bnneck.running_mean",
                                 "bnneck.running_var", "classifier.weight"]  # fmt: skip
    assert torch.equal(model.layer3[1].conv2.weight, source["layer3.1.conv2.weight"])
    assert model.layer3[1].bn2.num_batches_tracked.item() == 0  # filled in, as torch does


def test_weights_errors(tmp_path):
    model = create_model("resnet18", num_classes=2)
    with pytest.raises(MissingInputError, match="weights file not found"):
        load_weights(model, tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="not a loadable weights file"):
        load_weights(model, tmp_path / "junk.pth")
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(DataError, match="none of its 1 tensors fit this model"):
        load_weights(model, tmp_path / "other.pth")


def test_models_list_shows_what_each_model_declares(cli):
    models = {}
    for name in ("resnet50", "osnet_x0_25", "timm/vit_small_patch16_224"):
        code, out, _ = cli("models", "list", name, "--json")
        assert code == 0
        models |= {m["name"]: m for m in json.loads(out)["models"]}
    r50, osnet = models["resnet50"], models["osnet_x0_25"]
    vit = models["timm/vit_small_patch16_224"]
    assert r50["options"] == {
        "bnneck": True, "last_stride": 1, "classifier": "linear", "neck_feat": "before",
        "non_local": False,
        "pooling": "avg", "gem_p": None, "gem_learnable": False, "stem_pool": "padding",
    }  # fmt: skip
    assert r50["distance"] == "cosine"
    assert r50["head"] == ["bnneck", "classifier", "pool"] and r50["pretrained"] == "torchvision"
    assert osnet["options"] == {} and osnet["distance"] == "euclidean"
    assert osnet["head"] == ["classifier"] and osnet["pretrained"] == "torchreid"
    assert vit["mean"] == [0.5, 0.5, 0.5] and vit["input_size"] == [256, 128]
    assert all(m["imagenet_cached"] is False for m in models.values())  # an empty TORCH_HOME
    code, out, _ = cli("models", "list", "resnet50")
    row = next(line for line in out.splitlines() if " resnet50 " in line)
    assert "bnneck=True, last_stride=1" in row and "torchvision, not cached" in row
    assert "256x128" in row and "cosine" in row


def test_options_a_model_does_not_have_are_refused():
    with pytest.raises(UsageError) as err:
        create_model("osnet_x0_25", 3, bnneck=False)
    assert err.value.message == "model osnet_x0_25 has no option bnneck (its options: none)"
    with pytest.raises(UsageError, match=r"model\.last_stride must be 1 or 2, got 3"):
        create_model("resnet18", 3, last_stride=3)
    assert model_distance("resnet50") == "cosine"
    assert model_distance("resnet50", {"bnneck": False}) == "euclidean"  # torchreid's


@pytest.mark.parametrize(
    "pattern, hint",
    [
        (
            "osnet",
            "hint: models like it: osnet_x1_0, osnet_x0_75, osnet_x0_5, osnet_x0_25, "
            "osnet_ibn_x1_0, osnet_ain_x1_0, osnet_ain_x0_75, osnet_ain_x0_5, osnet_ain_x0_25",
        ),
        ("osnt*", "hint: models like it: osnet_x1_0, osnet_x0_5, osnet_x0_75"),
        ("zzz", "hint: reidkit models list shows all"),
    ],
)
def test_models_list_that_matches_nothing_says_so(cli, pattern, hint):
    code, out, err = cli("models", "list", pattern)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and lines[-2] == f"error: no model matches '{pattern}'"
    assert lines[-1] == f"{hint} (a pattern like 'osnet*' lists a family)"


def test_models_list_of_a_timm_name_timm_lacks_gets_timms_suggestions(cli):
    code, _, err = cli("models", "list", "timm/resnet_18")
    lines = err.strip().splitlines()
    assert (
        code == 2
        and lines[-2] == "error: unknown model 'timm/resnet_18': timm has no model 'resnet_18'"
    )
    assert lines[-1].startswith("hint: timm models like it: ")


@pytest.mark.parametrize("name", ["resnet18", "timm/resnet18"])
def test_models_list_of_a_full_name_lists_that_model(cli, name):
    code, out, err = cli("models", "list", name, "--json")
    assert code == 0, err
    assert [m["name"] for m in json.loads(out)["models"]] == [name]


def test_a_thread_asking_while_another_loads_the_models_waits_for_all_of_them():
    """The first lookup imports the built-in models' modules; a second thread asking
    meanwhile must see every model, not those imported so far (it saw no OSNet while the
    first thread was still in reidkit.models.zoo). A fresh interpreter, where nothing is
    loaded yet; the zoo's import is held until the second thread has asked."""
    script = textwrap.dedent(
        """
        import importlib.abc, sys, threading, time
        from reidkit.models.spec import MODELS

        inside, asked = threading.Event(), threading.Event()

        class HoldTheZoo(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "reidkit.models.zoo" and not inside.is_set():
                    inside.set()
                    asked.wait(2)  # the other thread asks while the zoo is being imported
                return None

        sys.meta_path.insert(0, HoldTheZoo())
        first = threading.Thread(target=MODELS.names)
        first.start()
        inside.wait(10)
        seen = {}
        second = threading.Thread(target=lambda: seen.update(osnet="osnet_x0_25" in MODELS))
        second.start()
        time.sleep(0.2)  # the second thread is now waiting, or has answered (the bug)
        asked.set()
        first.join(); second.join()
        print(seen["osnet"], len(MODELS.names()))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    found, count = done.stdout.split()
    assert found == "True" and int(count) >= 12
