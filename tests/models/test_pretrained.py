"""Training from ImageNet weights through the caches the real libraries use, offline.

Files are placed by hand exactly where a download would put them: torchvision's in
TORCH_HOME/hub/checkpoints, torchreid's OSNet files in TORCH_HOME/checkpoints, timm's in the
Hugging Face cache. The network is made unreachable (a proxy on a closed local port), so a
file that is not cached cannot be fetched, as on an offline machine.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import FAST_TRAIN
from published import save_legacy, torchvision_imagenet_file
from torchreid_reference import TORCHREID_CHANNELS, torchreid_osnet_state
from torchvision.models import resnet18

from reidkit.fileio import file_sha256
from reidkit.models.checkpoint import load_checkpoint

OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty TORCH_HOME and no network."""
    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    return home


def train(cli, root, run, model, pretrained, *extra):
    # the base's learning rate is 0: the trunk's weights stay what the run started from;
    # small images: what is checked is where the weights came from, not what they learn
    return cli(
        "train", "--dataset", "synthreid", "--root", root, "--model", model, "--run", run,
        "--epochs", "1", *FAST_TRAIN, "data.height=32", "data.width=16",
        f"model.pretrained={pretrained}", "optim.base_lr_mult=0", "--json", *extra,
    )  # fmt: skip


def test_imagenet_from_torchvisions_cache(cli, synth_tiny, tmp_path, offline):
    # torchvision's file as published: no BatchNorm batch counters, ImageNet's fc included
    cached = offline / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    imagenet = torchvision_imagenet_file(18, cached, seed=5)
    assert len(imagenet) == 102 and not any("num_batches_tracked" in k for k in imagenet)
    code, out, err = cli("models", "list", "resnet18", "--json")
    assert json.loads(out)["models"][0]["imagenet_cached"] is True

    run = tmp_path / "run"
    code, out, err = train(cli, synth_tiny, run, "resnet18", "imagenet")
    assert code == 0, err
    weights = load_checkpoint(run / "weights" / "last.pt")["state_dict"]
    for key in ("conv1.weight", "layer3.1.conv2.weight", "layer4.1.conv2.weight"):
        assert torch.equal(weights[key], imagenet[key]), key
    env = json.loads((run / "env.json").read_text())
    assert env["pretrained"] == {
        "source": "torchvision",
        "file": str(cached),
        "sha256": file_sha256(cached),
        "used": 100,  # resnet18's trunk: all of it (its 20 batch counters are not counted)
        "skipped": 2,  # ImageNet's fc
        "missing": 5,  # the new head: BNNeck (4 tensors), classifier (its weight, no bias)
    }
    first_line = (run / "config.yaml").read_text().splitlines()[0]
    assert first_line == f"# initial weights: {cached} (torchvision, sha256 {file_sha256(cached)})"

    # the same run from scratch starts elsewhere
    code, out, err = train(cli, synth_tiny, tmp_path / "scratch", "resnet18", "none")
    scratch = load_checkpoint(tmp_path / "scratch" / "weights" / "last.pt")["state_dict"]
    assert code == 0 and not torch.equal(scratch["conv1.weight"], imagenet["conv1.weight"])
    env = json.loads((tmp_path / "scratch" / "env.json").read_text())
    assert env["pretrained"] is None


def test_torchvisions_file_in_extract_and_export(cli, synth_tiny, tmp_path):
    """The same published form through extract and export: the trunk loads whole; the file
    has no BNNeck, so the default model is refused with the option that fits."""
    imagenet = torchvision_imagenet_file(18, tmp_path / "resnet18-f37072fd.pth", seed=5)
    common = ["--model", "resnet18", "--weights", tmp_path / "resnet18-f37072fd.pth",
              "--dataset", "synthreid", "--root", synth_tiny, "--subsets", "query",
              "--height", "64", "--width", "32", "--json"]  # fmt: skip
    code, _out, err = cli("extract", *common, "--out", tmp_path / "f")
    lines = err.strip().splitlines()
    assert code == 1 and lines[-2].endswith(
        "resnet18-f37072fd.pth: leaves 4 of the model's 105 tensors unloaded (bnneck: 4)"
    )
    assert lines[-1] == (
        "hint: the file has no BNNeck (ImageNet weights, or a model trained without one): "
        "--no-bnneck (model.bnneck=false) takes the trunk's pooled features as they are"
    )
    assert not (tmp_path / "f").exists()
    code, _out, export_err = cli(
        "export", "--model", "resnet18", "--weights", tmp_path / "resnet18-f37072fd.pth",
        "--out", tmp_path / "r18.onnx", "--dataset", "synthreid", "--root", synth_tiny,
    )  # fmt: skip
    assert code == 1 and export_err.strip().splitlines()[-2:] == lines[-2:]  # the same verdict
    assert not (tmp_path / "r18.onnx").exists()
    code, out, err = cli("extract", *common, "--no-bnneck", "--out", tmp_path / "f")
    assert code == 0, err
    weights = json.loads(out)["weights"]
    assert (weights["used"], weights["skipped"], weights["missing"]) == (100, 2, 2)
    assert weights["skipped_keys"] == ["fc.weight", "fc.bias"]
    assert weights["missing_keys"] == ["classifier.weight", "classifier.bias"]
    from reidkit.features.source import load_model_source

    model = load_model_source(
        model_name="resnet18", weights=tmp_path / "resnet18-f37072fd.pth",
        model_options={"bnneck": False},
    ).model  # fmt: skip
    assert torch.equal(model.layer4[1].bn2.running_var, imagenet["layer4.1.bn2.running_var"])


def test_imagenet_not_cached_and_no_network_is_a_usage_error(cli, synth_tiny, tmp_path, offline):
    run = tmp_path / "run"
    code, _out, err = train(cli, synth_tiny, run, "resnet18", "imagenet")
    cached = offline / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    lines = err.strip().splitlines()
    assert code == 2 and lines[-2].startswith(
        f"error: no ImageNet weights for resnet18: {cached} is not cached and "
        "https://download.pytorch.org/models/resnet18-f37072fd.pth could not be fetched ("
    )
    assert lines[-1] == (
        "hint: --pretrained none trains from scratch; --pretrained FILE starts from a local file"
    )
    assert not run.exists() and not cached.exists()  # no run, no partial download


def test_osnet_imagenet_is_torchreids_file(cli, synth_tiny, tmp_path, offline):
    run = tmp_path / "run"
    code, _, err = train(cli, synth_tiny, run, "osnet_x0_25", "imagenet")
    expected = offline / "checkpoints" / "osnet_x0_25_imagenet.pth"
    assert code == 2 and err.strip().splitlines()[-2] == (
        f"error: no ImageNet weights for osnet_x0_25: torchreid's file {expected} is not there "
        "(torchreid downloads it from "
        "https://drive.google.com/uc?id=1rb8UN5ZzPKRc_xvtHlyDh-cSz88YX9hs)"
    )
    assert not run.exists()
    state = torchreid_osnet_state(TORCHREID_CHANNELS["osnet_x0_25"], num_classes=1000)
    expected.parent.mkdir(parents=True)
    save_legacy(state, expected)  # published in 2019, in torch's legacy format
    code, _out, err = train(cli, synth_tiny, run, "osnet_x0_25", "imagenet")
    assert code == 0, err
    env = json.loads((run / "env.json").read_text())["pretrained"]
    # everything but the 1000-class ImageNet classifier
    # (BatchNorm's 80 batch counters are loaded but not counted)
    assert (env["source"], env["used"], env["skipped"], env["missing"]) == ("torchreid", 484, 2, 2)
    weights = load_checkpoint(run / "weights" / "last.pt")["state_dict"]
    assert torch.equal(weights["conv2.0.streams.0.0.pointwise.weight"],
                       state["conv2.0.conv2a.conv1.weight"])  # fmt: skip


def test_pretrained_file_and_resume_keep_the_record(cli, synth_tiny, tmp_path, offline):
    torch.manual_seed(6)
    start = tmp_path / "start.pth"
    torch.save({"state_dict": resnet18(weights=None).state_dict(), "epoch": 3}, start)
    run = tmp_path / "run"
    code, _, err = train(cli, synth_tiny, run, "resnet18", start)
    assert code == 0, err
    record = json.loads((run / "env.json").read_text())["pretrained"]
    assert (record["source"], record["file"], record["sha256"]) == (
        "file",
        str(start),
        file_sha256(start),
    )
    code, _out, err = cli("resume", run, "--max-epoch", "2", "--json")
    assert code == 0, err
    assert load_checkpoint(run / "weights" / "last.pt")["pretrained"] == record
    assert (run / "config.yaml").read_text().startswith(f"# initial weights: {start} (file, ")


def test_a_partial_start_is_refused_unless_allowed(cli, synth_tiny, tmp_path, offline):
    partial = tmp_path / "partial.pth"
    state = resnet18(weights=None).state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4.")}, partial)
    run = tmp_path / "run"
    code, _, err = train(cli, synth_tiny, run, "resnet18", partial)
    assert code == 1 and err.strip().splitlines()[-2] == (
        f"error: {partial}: leaves 25 of the model's 105 tensors unloaded (layer4: 25)"
    )
    assert not run.exists()
    code, _out, err = train(cli, synth_tiny, run, "resnet18", partial, "--allow-partial")
    assert code == 0, err
    assert json.loads((run / "env.json").read_text())["pretrained"]["missing"] == 30
    assert "leaves 25 of the model's 105 tensors unloaded (layer4: 25); loaded anyway" in err


def place_in_hf_cache(home, repo: str, state: dict) -> None:
    """A stand-in for a timm file on the hub: model.safetensors in the cache's layout. Whether
    timm's published files carry BatchNorm's batch counters could not be checked here; the
    stand-in leaves them out, the case a strict loader would trip on."""
    from safetensors.torch import save_file

    state = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
    folder = home / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "snapshots" / HUB_COMMIT).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(HUB_COMMIT)
    tensors = {k: v.contiguous() for k, v in state.items()}
    save_file(tensors, folder / "snapshots" / HUB_COMMIT / "model.safetensors")


@pytest.mark.slow
def test_timm_imagenet_from_the_hugging_face_cache(cli, synth_tiny, tmp_path, monkeypatch):
    """In this process: huggingface_hub reads HF_HOME and HF_HUB_OFFLINE once, at import,
    into the constants set here."""
    import huggingface_hub.constants
    import timm

    torch.manual_seed(7)
    imagenet = timm.create_model("resnet50d", pretrained=False).state_dict()
    hf_home = tmp_path / "hf"
    run = tmp_path / "run"
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    # not cached, offline (HF_HUB_OFFLINE spares the hub client's retries): a usage error
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    code, _, err = train(cli, synth_tiny, run, "timm/resnet50d", "imagenet")
    assert code == 2 and err.strip().splitlines()[-2].startswith(
        "error: no ImageNet weights for timm/resnet50d: timm/resnet50d.ra2_in1k is not in the "
        f"Hugging Face cache ({hf_home / 'hub'})"
    )
    assert not run.exists()
    place_in_hf_cache(hf_home, "timm/resnet50d.ra2_in1k", imagenet)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    # the trunk frozen: where it came from is the point, and its backward pass is not
    code, _, err = train(
        cli, synth_tiny, run, "timm/resnet50d", "imagenet", "train.freeze_base_epochs=1"
    )
    assert code == 0, err
    weights = load_checkpoint(run / "weights" / "last.pt")["state_dict"]
    assert torch.equal(weights["trunk.conv1.0.weight"], imagenet["conv1.0.weight"])
    assert torch.equal(weights["trunk.layer4.2.conv3.weight"], imagenet["layer4.2.conv3.weight"])
    record = json.loads((run / "env.json").read_text())["pretrained"]
    assert record["source"] == "timm" and record["file"].endswith("model.safetensors")
    # timm built the trunk without its classifier; the BNNeck and classifier are new
    assert record["missing"] == 5 and record["skipped"] == 0  # BNNeck 4, classifier 1


def test_cached_timm_weights_are_read_without_the_hub(tmp_path, monkeypatch):
    """A file in the Hugging Face cache is loaded as a file: no hub request at all."""
    import huggingface_hub.constants
    import timm
    import timm.models._hub

    from reidkit.models import create_model
    from reidkit.models.timm_trunk import timm_imagenet_state

    def no_network(*args, **kwargs):
        raise AssertionError(f"the hub was asked for {args or kwargs}")

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", no_network)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    model = create_model("timm/resnet50d", 4, image_size=(64, 32))
    torch.manual_seed(3)
    imagenet = timm.create_model("resnet50d", pretrained=False).state_dict()
    place_in_hf_cache(tmp_path / "hf", "timm/resnet50d.ra2_in1k", imagenet)
    state, path = timm_imagenet_state(model)
    repo = tmp_path / "hf" / "hub" / "models--timm--resnet50d.ra2_in1k"
    assert path == repo / "snapshots" / HUB_COMMIT / "model.safetensors"
    assert torch.equal(state["trunk.conv1.0.weight"], imagenet["conv1.0.weight"])
    assert torch.equal(
        state["trunk.layer4.2.bn3.running_var"], imagenet["layer4.2.bn3.running_var"]
    )


def test_a_folder_is_not_a_weights_file(cli, synth_tiny, tmp_path, offline):
    folder = tmp_path / "runs" / "old"
    (folder / "weights").mkdir(parents=True)
    code, _, err = train(cli, synth_tiny, tmp_path / "run", "resnet18", folder)
    lines = err.strip().splitlines()
    assert code == 2 and lines[-2] == f"error: weights file {folder} is a folder, not a file"
    assert lines[-1] == "hint: initial weights come only from a local file"
    torch.save({"state_dict": {}}, folder / "weights" / "last.pt")
    code, _, err = train(cli, synth_tiny, tmp_path / "run", "resnet18", folder)
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"hint: a run directory's weights are files: {folder / 'weights' / 'last.pt'}"
    )
    assert not (tmp_path / "run").exists()
