"""fast-reid's checkpoints: every published design's names and shapes in both head layouts
load whole into the model the file says it holds; features equal a functional forward
written from fast-reid's names (tests/fastreid_reference.py); its pixels (bicubic, its
normalisation) end to end; its config.yaml; refusals; import, export and ONNX extraction."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fastreid_reference import (
    IMAGENET_PIXEL_MEAN,
    IMAGENET_PIXEL_STD,
    baseline_feature,
    baseline_file,
    mgn_zoo_feature,
    mgn_zoo_file,
)
from PIL import Image

from reidkit.errors import UsageError
from reidkit.features.source import load_model_source
from reidkit.features.store import read_features
from reidkit.models import create_model
from reidkit.models.pretrained import load_pretrained
from reidkit.models.weights import is_counter, read_weights

# the designs: (depth, IBN design, non-local, learned GeM p) as fast-reid's configs
DESIGNS = {
    "bot_r50": (50, None, False, None),
    "bot_r50_ibn": (50, "a", False, None),
    "agw_r50": (50, None, True, None),
    "sbs_r50_ibn": (50, "a", True, 3.3),
    "sbs_r101_ibn": (101, "a", True, 3.3),
}


@functools.cache
def design_file(design: str, layout: str, calibrate: bool = False) -> dict:
    depth, ibn, non_local, p = DESIGNS[design]
    return baseline_file(
        depth, ibn, layout=layout, non_local=non_local, gem_p=p, calibrate=calibrate
    )


def save(container: dict, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(container, path)
    return path


# every design in the zoo's layout; the later layouts' head names on R50 with and without
# SBS's parts (MGN's later layout is reidkit's own: tests/models/test_mgn.py)
LAYOUTS = [*((d, "zoo") for d in [*DESIGNS, "mgn_r50_ibn"]), ("bot_r50", "later"),
           ("sbs_r50_ibn", "later"), ("sbs_r50_ibn", "2020-09")]  # fmt: skip


@pytest.mark.parametrize(("design", "layout"), LAYOUTS)
def test_each_design_and_layout_loads_whole(design, layout, tmp_path):
    if design == "mgn_r50_ibn":
        container, _ = mgn_zoo_file("a")
        expected = ("mgn_resnet50_ibn_a", {"head_layout": "zoo", "pooling": "gem"})
    else:
        depth, ibn, non_local, p = DESIGNS[design]
        container = design_file(design, layout)
        name = f"resnet{depth}_ibn_a" if ibn else f"resnet{depth}"
        pooling = "gem" if non_local else "avg"  # AGW's fixed GeM leaves no tensor
        expected = (name, {"non_local": non_local, "pooling": pooling, "gem_learnable": bool(p)})
    container = {**container, "model": {f"module.{k}": v for k, v in container["model"].items()}}
    state, extra = read_weights(save(container, tmp_path / "model_final.pth"))
    described = extra["fastreid"]
    assert described["model"] == expected[0] and described["layout"] == layout
    assert {k: described["options"][k] for k in expected[1]} == expected[1]
    assert described["options"]["stem_pool"] == ("padding" if layout == "zoo" else "ceil")
    assert described["data"]["interpolation"] == "bicubic"
    with torch.device("meta"):  # names and shapes only
        model = create_model(described["model"], num_classes=751, **described["options"])
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if not is_counter(k)}
    theirs = {k: tuple(v.shape) for k, v in state.items() if not is_counter(k)}
    assert theirs == own  # every tensor of the file used, every tensor of the model loaded


def test_sbs_features_equal_fastreids_in_both_layouts(tmp_path):
    x = torch.rand(2, 3, 64, 32, generator=torch.Generator().manual_seed(0)) * 255
    zoo = design_file("sbs_r50_ibn", "zoo", calibrate=True)
    renamed = {"heads.bnneck.": "heads.bottleneck.0.", "heads.classifier.": "heads."}
    later = {"model": {
        next((new + k[len(old):] for old, new in renamed.items() if k.startswith(old)), k): v
        for k, v in zoo["model"].items() if not k.startswith("pixel_")}}  # fmt: skip
    for layout, stem, container in (("zoo", "padding", zoo), ("later", "ceil", later)):
        source = load_model_source(weights=save(container, tmp_path / layout / "sbs.pth"))
        assert source.weights_report["missing"] == 0 and source.weights_report["skipped"] == 0
        mean = torch.tensor(source.data["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(source.data["std"]).view(1, 3, 1, 1)
        with torch.no_grad():
            mine = source.model((x / 255 - mean) / std)
            expected = baseline_feature(
                container, x, 50, "a", last_stride=1, non_local=True, stem_pool=stem
            )
        # float32 through 50 layers and five non-local blocks; a wrong part is off by 1e-1
        assert (mine - expected).abs().max() / expected.abs().max() < 1e-4, layout


def test_mgn_zoo_layout_equals_fastreids(tmp_path):
    container, resnet = mgn_zoo_file("a")
    source = load_model_source(weights=save(container, tmp_path / "mgn.pth"))
    assert source.attrs["model"] == "mgn_resnet50_ibn_a" and source.data["height"] == 384
    x = torch.rand(2, 3, 96, 32, generator=torch.Generator().manual_seed(0)) * 255
    mean = torch.tensor(IMAGENET_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_PIXEL_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        mine = source.model((x - mean) / std)
        expected = mgn_zoo_feature(container, resnet, x, "a")
    assert (mine - expected).abs().max() / expected.abs().max() < 1e-4


def test_every_inference_path_normalises_with_fastreids_arithmetic():
    from reidkit.deploy.export import deploy_graph
    from reidkit.deploy.metadata import DeployInfo
    from reidkit.features.batches import normalize_nchw
    from reidkit.features.extractor import normalize
    from reidkit.features.options import ExtractOptions

    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 4, 3), dtype=np.uint8)
    mean, std = [v / 255 for v in IMAGENET_PIXEL_MEAN], [v / 255 for v in IMAGENET_PIXEL_STD]
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
    # fast-reid: images.sub_(pixel_mean).div_(pixel_std), its buffers float32 of 255-scale
    expected = (x - torch.tensor(IMAGENET_PIXEL_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_PIXEL_STD
    ).view(1, 3, 1, 1)
    options = ExtractOptions(mean=mean, std=std)
    assert torch.equal(normalize(torch.from_numpy(pixels), options), expected)
    assert np.array_equal(normalize_nchw(pixels, mean, std), expected.numpy())
    graph = deploy_graph(torch.nn.Identity(), DeployInfo(8, 4, mean, std))
    assert torch.equal(graph(x.to(torch.uint8)), expected)


def test_extract_weights_alone_resizes_bicubic_and_records_it(tmp_path, cli):
    from reidkit.features.origin import check_same_origin

    folder = tmp_path / "crops"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # smooth images, on which bicubic and bilinear resizing differ
        small = rng.integers(0, 256, (12, 6, 3), dtype=np.uint8)
        Image.fromarray(small).resize((40, 80), Image.Resampling.NEAREST).save(folder / f"{i}.png")
    container = baseline_file(18, None, layout="later", classes=10)
    weights = save(container, tmp_path / "run" / "model_final.pth")
    config = {"MODEL": {"META_ARCHITECTURE": "Baseline",
                        "BACKBONE": {"DEPTH": "18x", "LAST_STRIDE": 2}},
              "INPUT": {"SIZE_TEST": [64, 32]}}  # fmt: skip
    (weights.parent / "config.yaml").write_text(yaml.safe_dump(config))
    code, out, err = cli(
        "extract", "--weights", weights, "--images", folder, "--out", tmp_path / "f", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["options"]["interpolation"] == "bicubic"
    feats = read_features(next((tmp_path / "f").glob("*.h5")))
    assert feats.attrs["interpolation"] == "bicubic" and feats.attrs["model"] == "resnet18"
    assert json.loads(feats.attrs["model_options"])["last_stride"] == 2  # from config.yaml

    root = Path(feats.attrs["root"])

    def reference(resample):
        pixels = np.stack([
            np.asarray(Image.open(root / p).convert("RGB").resize((32, 64), resample))
            for p in feats.paths
        ]).transpose(0, 3, 1, 2)  # fmt: skip
        x = torch.from_numpy(pixels).double()
        with torch.no_grad():
            return baseline_feature(container, x, 18, None, last_stride=2, stem_pool="ceil").numpy()

    scale = np.abs(feats.features).max()
    assert np.abs(feats.features - reference(Image.Resampling.BICUBIC)).max() / scale < 1e-5
    assert np.abs(feats.features - reference(Image.Resampling.BILINEAR)).max() / scale > 1e-3
    bilinear = type(feats)(feats.features, feats.pids, feats.camids, attrs={
        **{k: v for k, v in feats.attrs.items() if k != "interpolation"}})  # fmt: skip
    with pytest.raises(UsageError, match="resize interpolation bicubic against bilinear"):
        check_same_origin(feats, bilinear)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"MODEL": {"BACKBONE": {"WITH_IBN": True}}}, "BACKBONE.WITH_IBN True"),
        ({"MODEL": {"META_ARCHITECTURE": "Distiller"}}, "META_ARCHITECTURE Distiller"),
        ({"MODEL": {}, "DATASETS": {"NAMES": '("VeRi",)'}}, "vehicle dataset VeRi"),
        ({"MODEL": {}, "DATASETS": {"NAMES": ["PA100K"]}}, "attribute dataset PA100K"),
        ({"_BASE_": "../Base-SBS.yml", "MODEL": {}}, "config not found: "),
        ({"MODEL": {"HEADS": {"POOL_LAYER": "maxpool"}}}, "POOL_LAYER maxpool"),
        ({"MODEL": {"BACKBONE": {"DEPTH": "50x"}}}, "BACKBONE.DEPTH 50x"),
    ],
)
def test_configs_that_do_not_fit_are_refused(config, message, tmp_path, cli):
    weights = save(baseline_file(18, None, layout="zoo", classes=10), tmp_path / "w.pth")
    config.setdefault("MODEL", {}).setdefault("BACKBONE", {}).setdefault("DEPTH", "18x")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    args = ["--weights", weights, "--config", tmp_path / "c.yaml", "--out", tmp_path / "x.onnx"]
    code, _, err = cli("export", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) <= 2, err
    assert not (tmp_path / "x.onnx").exists()


def test_files_reidkit_does_not_build_are_refused(tmp_path):
    base = baseline_file(18, None, layout="later", classes=10)["model"]
    cases = {
        "SE blocks": {**base, "backbone.layer1.0.se.fc.0.weight": torch.zeros(4, 64, 1, 1)},
        "ResNeSt": {**base, "backbone.layer1.0.conv2.conv.weight": torch.zeros(1)},
        "meta-architecture": {**base, "model_t.0.weight": torch.zeros(1)},
        "reduces the feature": {**base, "heads.bottleneck.0.weight": torch.zeros(256, 512, 1, 1)},
    }
    for message, state in cases.items():
        path = save({"model": state}, tmp_path / f"{len(message)}.pth")
        with pytest.raises(UsageError, match=message):
            read_weights(path)
    agw = save(design_file("agw_r50", "zoo"), tmp_path / "agw.pth")
    with pytest.raises(UsageError, match=r"unused \(NL_3: \d+, NL_2: \d+\).*non_local=True"):
        load_model_source(None, "resnet50", weights=agw, model_options={"non_local": False})
    with pytest.raises(UsageError, match="not a fast-reid file, so its model is not known"):
        torch.save(create_model("resnet18", 2).state_dict(), tmp_path / "plain.pth")
        load_model_source(weights=tmp_path / "plain.pth")


def test_fine_tuning_starts_from_all_but_the_classifier(tmp_path):
    weights = save(design_file("agw_r50", "later"), tmp_path / "agw.pth")
    model = create_model("resnet50", num_classes=7, non_local=True, pooling="gem")
    record = load_pretrained(model, "resnet50", str(weights))
    assert record["missing"] == 1 and record["skipped"] == 1  # the 751-way classifier
    state = read_weights(weights)[0]
    assert torch.equal(model.state_dict()["NL_3.2.W.1.weight"], state["NL_3.2.W.1.weight"])
    with pytest.raises(UsageError, match="unused"):  # without the non-local blocks
        load_pretrained(create_model("resnet50", num_classes=7), "resnet50", str(weights))


def test_import_export_and_onnx_extraction_give_pytorchs_features_and_map(
    synth_tiny, tmp_path, cli
):
    weights = save(design_file("sbs_r50_ibn", "zoo", calibrate=True), tmp_path / "sbs.pth")
    ckpt, onnx_file = tmp_path / "sbs.pt", tmp_path / "sbs.onnx"
    code, out, err = cli(
        "models", "import", weights, "--out", ckpt, "--height", "64", "--width", "32", "--json"
    )
    assert code == 0, err
    card = json.loads(out)
    assert card["model"] == "resnet50_ibn_a" and card["num_classes"] == 751
    assert card["model_options"]["non_local"] is True and card["distance"] == "cosine"
    assert card["model_options"]["gem_p"] == pytest.approx(3.3)
    assert card["data"]["interpolation"] == "bicubic" and card["data"]["height"] == 64
    data = ["--dataset", "synthreid", "--root", synth_tiny]
    code, out, err = cli("export", ckpt, "--out", onnx_file, *data, "--json")
    assert code == 0, err
    assert json.loads(out)["interpolation"] == "bicubic"
    code, _, err = cli("extract", "--onnx", onnx_file, *data, "--out", tmp_path / "onnx", "-q")
    assert code == 0, err
    code, _, err = cli("extract", ckpt, *data, "--out", tmp_path / "pt", "-q")
    assert code == 0, err
    for subset in ("query", "gallery"):
        from_onnx, from_torch = (
            read_features(tmp_path / kind / f"synthreid-{subset}.h5") for kind in ("onnx", "pt")
        )
        assert from_onnx.attrs["interpolation"] == from_torch.attrs["interpolation"] == "bicubic"
        scale = np.abs(from_torch.features).max()
        assert np.abs(from_onnx.features - from_torch.features).max() / scale < 1e-4
    maps = []
    for kind in ("onnx", "pt"):
        folder = tmp_path / kind
        code, out, err = cli("evaluate", folder / "synthreid-query.h5",
                             folder / "synthreid-gallery.h5", "--json")  # fmt: skip
        assert code == 0, err
        maps.append(json.loads(out)["mAP"])
    assert maps[0] == pytest.approx(maps[1], abs=1e-4)


def test_a_recipe_of_fastreids_repository_is_read_with_its_bases(tmp_path):
    """The zoo's files come without the config.yaml of their run: the repository's recipe
    (configs/Market1501/sbs_*.yml) gives their settings through its _BASE_ chain."""
    weights = save(baseline_file(18, None, layout="zoo", classes=10), tmp_path / "w.pth")
    base = {"MODEL": {"BACKBONE": {"DEPTH": "18x", "LAST_STRIDE": 2},
                      "HEADS": {"CLS_LAYER": "circleSoftmax"}},
            "INPUT": {"SIZE_TEST": [384, 128]}}  # fmt: skip
    (tmp_path / "configs" / "Market1501").mkdir(parents=True)
    (tmp_path / "configs" / "Base-x.yml").write_text(yaml.safe_dump(base))
    recipe = {"_BASE_": "../Base-x.yml", "MODEL": {"BACKBONE": {"LAST_STRIDE": 1}},
              "DATASETS": {"NAMES": '("Market1501",)'}}  # fmt: skip
    (tmp_path / "configs" / "Market1501" / "x.yml").write_text(yaml.safe_dump(recipe))
    source = load_model_source(weights=weights, config=tmp_path / "configs/Market1501/x.yml")
    options = json.loads(source.attrs["model_options"])
    assert (source.data["height"], source.data["width"]) == (384, 128)  # from the base
    assert options["last_stride"] == 1 and options["classifier"] == "cosine"  # recipe, base


def test_training_resizes_as_the_model_card_says():
    from reidkit.config import DataConfig
    from reidkit.data.transforms import train_transform

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 20, 3), np.uint8))
    data = DataConfig(height=32, width=16, mean=[0, 0, 0], std=[1, 1, 1], flip=0, pad=0,
                      erasing=0, interpolation="bicubic")  # fmt: skip
    x = train_transform(data)(image)
    for resample, same in ((Image.Resampling.BICUBIC, True), (Image.Resampling.BILINEAR, False)):
        expected = np.asarray(image.resize((16, 32), resample), np.float32).transpose(2, 0, 1)
        assert np.allclose(x.numpy() * 255, expected, atol=1e-3) is same


def test_mgn_names_are_fastreids_only_in_its_checkpointers_container(tmp_path):
    """MGN's later names are reidkit's own MGN's too: a plain state dict or a reidkit
    checkpoint in them is reidkit's (its stem padded), a Checkpointer container fast-reid's
    (its stem ceil); a Baseline's ``heads.*`` and the zoo MGN's ``b1_pool.*`` are fast-reid's
    wherever they are."""
    from reidkit.models.fastreid import is_fastreid, translate

    names = {"backbone.0.weight": torch.zeros(1), "b1_head.weight": torch.zeros(1)}
    assert [is_fastreid(names, c) for c in (None, "state_dict", "model")] == [False, False, True]
    for fastreids in ("heads.weight", "b1_pool.0.p"):
        assert is_fastreid({"backbone.0.weight": torch.zeros(1), fastreids: torch.zeros(1)}, None)
    torch.save({"format": "reidkit.checkpoint/1", "state_dict": names}, tmp_path / "ckpt.pt")
    assert "fastreid" not in read_weights(tmp_path / "ckpt.pt")[1]
    # fast-reid's MGN of 2020-09 to 2021-03 named each head's classifier ``classifier``
    assert list(translate({"b21_head.classifier.weight": 0}, "2020-09")) == ["b21_head.weight"]


def test_models_import_never_overwrites_without_force(tmp_path, cli):
    weights = save(baseline_file(18, None, layout="later", classes=10), tmp_path / "w.pth")
    code, _, err = cli("models", "import", weights, "--out", weights, "--force")
    assert code == 2 and "is the weights file itself" in err
    (tmp_path / "taken.pt").write_text("mine")
    code, _, err = cli("models", "import", weights, "--out", tmp_path / "taken.pt")
    assert code == 2 and "exists" in err and (tmp_path / "taken.pt").read_text() == "mine"
    code, out, err = cli("models", "import", weights, "--out", tmp_path / "taken.pt", "--force")
    assert code == 0 and "resnet18" in out and "10 identities" in out, err
