"""reidkit export: every registered model exports and matches PyTorch; the options change
the graph as documented; the metadata says how to feed the file; bad input leaves no file."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from parallel_exports import export_all

from reidkit import __version__
from reidkit.errors import UsageError
from reidkit.features.batches import ImageList, batches_in_process
from reidkit.features.extractor import TorchRunner
from reidkit.features.options import ExtractOptions
from reidkit.features.source import load_model_source
from reidkit.fileio import file_sha256
from reidkit.models import create_model, list_models, model_options
from reidkit.models.ibn import NormAfterAdd
from reidkit.models.osnet import OSBlock
from reidkit.models.spec import IMAGENET_MEAN, IMAGENET_STD

SIZE = (64, 32)
EXPORT_SIZE = (80, 32)  # the registered models': MGN cuts 64 pixels' 4-row map into 2 parts


def props(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def pixels(synth_tiny, count=6, size=SIZE):
    paths = sorted(str(p) for p in (synth_tiny / "synthreid" / "query").glob("*.jpg"))[:count]
    (batch, _, _), *_ = batches_in_process(ImageList(paths, 0, *size), count)
    return batch


def torch_features(model, batch, flip=False, size=SIZE, data=None):
    norm = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    norm |= {k: (data or {})[k] for k in ("mean", "std") if k in (data or {})}
    options = ExtractOptions(height=size[0], width=size[1], flip=flip, **norm)
    return TorchRunner(model, options, "cpu").forward(batch, np.ones(len(batch), bool))


def ort_run(path, batch, nchw=None):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = nchw if nchw is not None else np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    return session, session.run(None, {"images": x})[0]


# CI exports what covers every registered model's parts (see model_parts), each export
# once, two at a time (tests/parallel_exports.py): a model's parts are its module types and
# the variants of the blocks whose forward branches on how they were built (an IBN-b
# block's norm after the sum, an OSNet block's instance norm); a model whose parts all come
# in exported models is covered by them, as depth, width and wiring add no layer of their
# own. resnet18's export is the session's shared export of a resnet18 checkpoint
# (deploy/conftest.py), checked like the others in
# test_cli_exports_a_run_directory_with_metadata_and_verification. The explore profile
# (HYPOTHESIS_PROFILE=explore, by hand) exports every registered model.
SHARED_EXPORT = "resnet18"
# the longest exports first (tests/parallel_exports.py)
ONE_OF_EACH_KIND = (
    "mgn_resnet50_ibn_a",
    "osnet_ibn_x1_0",
    "osnet_ain_x0_25",
    "timm/vit_small_patch16_224",
    "pcb_p6",
    "timm/resnet50d",
    "timm/convnext_tiny",
    "resnet18_ibn_b",
)  # fmt: skip  (IBN-a: in mgn_resnet50_ibn_a)
# options that bring layers of their own, on the models that accept them
LAYER_OPTIONS = ({"non_local": True}, {"pooling": "gem"}, {"pooling": "gem", "gem_learnable": True})
WITH_OPTIONS = {  # key: (name, options), exported beside ONE_OF_EACH_KIND
    "resnet50_ibn_b+nl+gem+ceil": (
        "resnet50_ibn_b",
        {"non_local": True, "pooling": "gem", "gem_learnable": True, "stem_pool": "ceil"},
    ),
}
EXPORTED = {
    **WITH_OPTIONS,  # after MGN's the longest export (18 and 10 s here): first, with it
    **{name: (name, {}) for name in (
        list_models() if os.environ.get("HYPOTHESIS_PROFILE") == "explore" else ONE_OF_EACH_KIND
    )},
}  # fmt: skip


def _variant(module) -> str:
    """How a block whose forward branches was built: IBN-b's norm after the sum, OSNet's
    instance norm ("" for the others)."""
    if isinstance(module, NormAfterAdd):
        return "[IN]" if module.IN is not None else "[-]"
    if isinstance(module, OSBlock):
        return f"[{module.instance_norm}]"
    return ""


def model_parts(name: str, options: dict | None = None) -> frozenset[str]:
    """What torch's exporter traces and ONNX Runtime runs of a registered model: its module
    types, with the variants of the blocks that branch (:func:`_variant`)."""
    return _parts(name, tuple(sorted((options or {}).items())))


@functools.cache  # a model asked for again (exported, and registered) is built once
def _parts(name: str, options: tuple) -> frozenset[str]:
    with torch.device("meta"):  # no weights are made: a few seconds for all of them
        model = create_model(name, num_classes=4, image_size=SIZE, **dict(options))
    return frozenset(
        f"{type(m).__module__}.{type(m).__qualname__}{_variant(m)}" for m in model.modules()
    )


def option_parts() -> dict[str, frozenset[str]]:
    """The parts of the registered models built with each of LAYER_OPTIONS they take."""
    parts = {}
    for name in list_models():
        for options in LAYER_OPTIONS:
            if set(options) <= set(model_options(name)):
                with contextlib.suppress(UsageError):  # e.g. non-local blocks in a ResNet-18
                    parts[f"{name} {options}"] = model_parts(name, options)
    return parts


def test_ci_exports_every_part_of_every_registered_model():
    """Each registered model's parts, and each part that a layer option brings, are
    exported in some model (their combinations with every trunk are not)."""
    traced = model_parts(SHARED_EXPORT).union(*(model_parts(*EXPORTED[k]) for k in EXPORTED))
    models = {name: model_parts(name) for name in list_models()} | option_parts()
    untraced = {k: sorted(parts - traced) for k, parts in models.items() if parts - traced}
    assert not untraced, (
        f"these parts are never exported in CI: {untraced} (add a model to ONE_OF_EACH_KIND)"
    )


@pytest.fixture(scope="module")
def registered_exports(synth_tiny, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """EXPORTED, each exported once with export_model (seeded random weights), two at a time
    (tests/parallel_exports.py): {key: (file, result)}."""
    return export_all(EXPORTED, EXPORT_SIZE, synth_tiny, tmp_path_factory.mktemp("registered"))


@pytest.mark.parametrize("key", list(EXPORTED))
def test_registered_models_export_and_match_pytorch(key, registered_exports, synth_tiny):
    """The export was made in another process: the model built here with the same seed is
    the reference, so the check does not lean on the exporter's own copy of it."""
    path, result = registered_exports[key]
    name, options = EXPORTED[key]
    height, width = EXPORT_SIZE
    source = load_model_source(
        None, name, height=height, width=width, model_options=options or None
    )
    v = result["verification"]
    assert v["images"] == 8 and v["batch_sizes"] == [8, 1]
    assert v["scaled_diff"] < 1e-4 and v["min_cosine"] > 0.9999
    # independently of the verifier: ONNX Runtime at a third batch size against PyTorch
    batch = pixels(synth_tiny, 3, EXPORT_SIZE)
    session, features = ort_run(path, batch)
    # ViT's mean and std are 0.5, 0.5
    reference = torch_features(source.model, batch, size=EXPORT_SIZE, data=source.data)
    assert features.shape == (3, source.model.feature_dim)
    scale = max(1.0, float(np.abs(reference).max()))
    assert np.abs(features - reference).max() / scale < 1e-4
    (images,) = session.get_inputs()
    assert images.type == "tensor(uint8)" and images.shape == ["batch", 3, *EXPORT_SIZE]
    meta = props(path)
    assert meta["model"] == name and meta["feature_dim"] == str(source.model.feature_dim)
    assert json.loads(meta["model_options"]) == model_options(name, options)  # with defaults
    assert (meta["height"], meta["width"], meta["batch"]) == (str(height), str(width), "dynamic")
    assert meta["checkpoint_sha256"] == ""  # random weights, seeded
    assert json.loads(meta["mean"]) == pytest.approx(source.data["mean"])


def test_cli_exports_a_run_directory_with_metadata_and_verification(
    checkpoint, exported_by_cli, synth_tiny, tmp_path, cli
):
    """``reidkit export RUN --out model.onnx --json`` (the shared export of the session),
    then an unchanged rerun."""
    out, result = exported_by_cli.path, exported_by_cli.result
    meta = props(out)
    assert meta == {
        "reidkit_format": "reidkit.onnx/1",
        "height": "64",
        "width": "32",
        "mean": "[0.485, 0.456, 0.406]",
        "std": "[0.229, 0.224, 0.225]",
        "interpolation": "bilinear",
        "input_format": "uint8",
        "flip": "false",
        "half": "false",
        "int8": "false",
        "calibration": "{}",
        "batch": "dynamic",
        "feature_dim": "512",
        "model": "resnet18",
        "model_options": "{}",  # the checkpoint was built with the defaults
        "distance": "cosine",
        "checkpoint_sha256": file_sha256(checkpoint / "weights" / "last.pt"),
        "reidkit_version": __version__,
    }
    assert result["sha256"] == file_sha256(out) and result["bytes"] == out.stat().st_size
    v = result["verification"]
    assert v["source"] == "synthreid (query and gallery)" and v["batch_sizes"] == [8, 1]
    assert 0 < v["max_abs_diff"] < 1e-4 and v["min_cosine"] > 0.99999
    assert v["runtime"] == f"onnxruntime {ort.__version__}"
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"]  # no temporary left
    # independently of the verifier: ONNX Runtime at a third batch size against PyTorch
    batch = pixels(synth_tiny, 3)
    session, features = ort_run(out, batch)
    model = load_model_source(checkpoint / "weights" / "last.pt").model
    reference = torch_features(model, batch)
    assert features.shape == (3, 512)
    assert np.abs(features - reference).max() / max(1.0, np.abs(reference).max()) < 1e-4
    (images,) = session.get_inputs()
    assert images.type == "tensor(uint8)" and images.shape == ["batch", 3, *SIZE]
    # an unchanged rerun: nothing to do, exit 0, the file untouched
    out = tmp_path / "model.onnx"
    shutil.copy(exported_by_cli.path, out)
    inode = (out.stat().st_ino, out.stat().st_mtime_ns)
    code, stdout, err = cli("export", checkpoint, "--out", out)
    assert code == 0, err
    assert stdout.strip() == (
        f"{out} is up to date (the same weights and options); --force exports it again"
    )
    assert (out.stat().st_ino, out.stat().st_mtime_ns) == inode


def test_flip_fixed_batch_and_opset_change_the_graph(
    checkpoint, exported, synth_tiny, tmp_path, cli
):
    """Over the export made with the defaults, a rerun with other options exports again;
    then the same rerun is up to date."""
    out = tmp_path / "flip.onnx"
    shutil.copy(exported, out)
    code, stdout, err = cli("export", checkpoint, "--out", out, "--json")
    assert code == 0 and json.loads(stdout)["up_to_date"] is True, err
    options = ["--flip", "--batch", "4", "--opset", "21", "--json"]
    code, stdout, err = cli("export", checkpoint, "--out", out, *options)
    assert code == 0, err
    assert json.loads(stdout)["up_to_date"] is False
    assert json.loads(stdout)["verification"]["batch_sizes"] == [4]
    model_proto = onnx.load(str(out))
    assert [(o.domain, o.version) for o in model_proto.opset_import if o.domain == ""] == [("", 21)]
    assert props(out)["flip"] == "true" and props(out)["batch"] == "4"
    batch = pixels(synth_tiny, 4)
    session, features = ort_run(out, batch)
    assert session.get_inputs()[0].shape == [4, 3, *SIZE]
    model = load_model_source(checkpoint / "weights" / "last.pt").model
    flipped, plain = torch_features(model, batch, flip=True), torch_features(model, batch)
    assert np.abs(features - flipped).max() < 1e-4
    assert np.abs(features - plain).max() > 1e-2  # the flip took effect
    code, stdout, _ = cli("export", checkpoint, "--out", out, *options)
    assert code == 0 and json.loads(stdout)["up_to_date"] is True
    assert json.loads(stdout)["flip"] is True and json.loads(stdout)["opset"] == 21


def test_half_float_input_and_size(checkpoint, synth_tiny, tmp_path, cli):
    out = tmp_path / "half.onnx"
    args = ["--half", "--input", "float", "--height", "96", "--width", "48", "--json"]
    code, stdout, err = cli("export", checkpoint, "--out", out, *args)
    assert code == 0, err
    v = json.loads(stdout)["verification"]
    assert v["tolerance"] == 1e-2 and 1e-6 < v["scaled_diff"] < 1e-2  # float16 rounding shows
    meta = props(out)
    assert (meta["half"], meta["input_format"], meta["height"], meta["width"]) == (
        "true",
        "float",
        "96",
        "48",
    )
    weights = [i for i in onnx.load(str(out)).graph.initializer if len(i.dims) == 4]
    assert weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    batch = pixels(synth_tiny, 3, size=(96, 48))
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
    x = ((batch.transpose(0, 3, 1, 2) / 255.0 - mean) / std).astype(np.float32)
    session, features = ort_run(out, batch, nchw=x)
    assert session.get_inputs()[0].type == "tensor(float)" and features.dtype == np.float32
    model = load_model_source(checkpoint / "weights" / "last.pt").model
    reference = torch_features(model, batch, size=(96, 48))
    assert np.abs(features - reference).max() / max(1, np.abs(reference).max()) < 1e-2


def test_bad_input_exits_with_one_line_and_leaves_no_file(
    checkpoint, exported, synth_tiny, tmp_path, cli, monkeypatch
):
    out = tmp_path / "out" / "m.onnx"
    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("not a checkpoint")
    one_image = tmp_path / "one"
    one_image.mkdir()
    shutil.copy(next((synth_tiny / "synthreid" / "query").glob("*.jpg")), one_image)
    cases = [
        ((not_a_checkpoint,), 1, "notes.pt: "),
        ((tmp_path / "missing",), 2, "no such checkpoint or run directory"),
        ((tmp_path,), 2, "a folder without weights/best.pt or weights/last.pt"),
        ((checkpoint, "--opset", "11"), 2, "--opset 11: torch's exporter writes opsets 18 to"),
        ((checkpoint, "--batch", "0"), 2, "--batch 0: give 'dynamic' or a positive batch size"),
        ((checkpoint, "--input", "rgb"), 2, "--input rgb: choose from uint8, float"),
        ((checkpoint, "--tolerance", "0"), 1, "verification failed: ONNX Runtime's features"),
        ((checkpoint, "--images", tmp_path / "none"), 2, "--images"),
        (("--model", "resnet18"), 2, "nothing to verify the export on: give --images DIR"),
        ((checkpoint, "--images", one_image), 2, "verified at two batch sizes, which needs"),
        ((checkpoint, "--seed", "1"), 2, "--seed is for --model: a checkpoint has its own"),
    ]
    for args, exit_code, message in cases:
        code, _, err = cli("export", *args, "--out", out)
        lines = err.strip().splitlines()
        assert (code, lines[0].startswith("error: ")) == (exit_code, True), (args, err)
        assert message in lines[0] and len(lines) <= 2, (args, err)  # error, then a hint
        assert not out.exists()
    # an exporter failure: its first line, exit 1, and the earlier export is left as it was
    out.parent.mkdir(exist_ok=True)
    shutil.copy(exported, out)  # the checkpoint's export (the defaults)
    before = out.read_bytes()

    def fail(*args, **kwargs):
        raise RuntimeError("Unsupported operator aten::weird\nlong trace")

    monkeypatch.setattr(torch.onnx, "export", fail)
    code, _, err = cli("export", checkpoint, "--out", out, "--force")
    assert code == 1
    assert "error: resnet18: torch's ONNX exporter failed: Unsupported operator aten::weird" in err
    assert out.read_bytes() == before and sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]


def test_without_the_onnx_extra_export_says_how_to_install(checkpoint, tmp_path, cli, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # import fails
    code, _, err = cli("export", checkpoint, "--out", tmp_path / "m.onnx")
    assert code == 2 and "error: onnx is not installed" in err
    assert "pip install 'reidkit[onnx]'" in err and not (tmp_path / "m.onnx").exists()


def test_a_file_that_is_no_reidkit_export_is_not_replaced(checkpoint, tmp_path, cli):
    out = tmp_path / "notes.onnx"
    out.write_text("my notes")
    code, stdout, err = cli("export", checkpoint, "--out", out)
    assert (
        code == 2
        and stdout == ""
        and err.strip().splitlines()[-2:]
        == [
            f"error: --out {out}: the file exists and is not a reidkit export",
            "hint: --force replaces it",
        ]
    )
    assert out.read_text() == "my notes"


def test_force_exports_again_and_an_interrupt_after_the_write_is_a_success(
    checkpoint, exported, tmp_path, cli, monkeypatch
):
    """--force over an up-to-date export exports it again; Ctrl-C that lands once the
    verified file is in place does not call it interrupted."""
    import os
    import signal

    from reidkit.cli import signals
    from reidkit.deploy.export import Export

    out = tmp_path / "m.onnx"
    shutil.copy(exported, out)  # the checkpoint's export (the defaults): up to date
    inode = out.stat().st_ino
    write = Export.write

    def write_then_interrupt(self, out):
        result = write(self, out)
        os.kill(os.getpid(), signal.SIGINT)  # delivered at the next bytecode
        return result

    monkeypatch.setattr(Export, "write", write_then_interrupt)
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signals._on_stop_signal)  # whatever an earlier test left
    try:
        code, stdout, err = cli("export", checkpoint, "--out", out, "--force")
    finally:
        signal.signal(signal.SIGINT, before)
    assert code == 0, err
    sha = file_sha256(checkpoint / "weights" / "last.pt")
    assert f"wrote {out}: resnet18 ({sha[:12]})" in stdout
    assert "verified on 8 images of synthreid (query and gallery) at batch 8 and 1" in stdout
    assert out.stat().st_ino != inode  # a new file took the old one's place
    assert "a stop signal came after the work was done: finished anyway" in err
    assert props(out)["model"] == "resnet18"
    assert not signals.was_interrupted(None)  # a late signal is no interruption


def test_random_weights_are_never_up_to_date(synth_tiny, tmp_path, cli):
    """--model without --weights: the seed is not in the metadata, so a rerun exports.
    The first export verifies on a folder of images, the second on a dataset."""
    crops = tmp_path / "crops"
    shutil.copytree(synth_tiny / "synthreid" / "query", crops)
    out = tmp_path / "r.onnx"
    common = ["--model", "resnet18", "--height", "64", "--width", "32", "--out", out, "--json"]
    code, stdout, err = cli("export", *common, "--images", crops, "--seed", "1")
    assert code == 0, err
    assert json.loads(stdout)["verification"]["source"] == str(crops)
    first = out.read_bytes()
    code, stdout, err = cli(
        "export", *common, "--dataset", "synthreid", "--root", synth_tiny, "--seed", "2"
    )
    assert code == 0, err
    assert json.loads(stdout)["up_to_date"] is False and out.read_bytes() != first
    assert json.loads(stdout)["verification"]["source"] == "synthreid (query and gallery)"
