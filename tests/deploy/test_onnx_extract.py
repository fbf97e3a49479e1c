"""reidkit extract --onnx: the same files as the PyTorch path (to the export tolerance), the
same mAP, the same resuming and --skip-bad, without importing torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from helpers import reidkit_env

from reidkit import threads
from reidkit.deploy.runtime import OnnxRunner
from reidkit.errors import Interrupted, UsageError
from reidkit.features.store import read_features

COMMON = ["--batch-size", "5", "--json"]  # 5: the last batch of each subset is short


def extract(cli, *args):
    code, out, err = cli("extract", *args, *COMMON)
    return code, (json.loads(out) if code == 0 else None), err


def evaluate(cli, folder):
    code, out, err = cli(
        "evaluate", folder / "synthreid-query.h5", folder / "synthreid-gallery.h5", "--json"
    )
    assert code == 0, err
    return json.loads(out)


def assert_same_rows(a, b, tolerance=1e-4):
    assert a.paths == b.paths and a.pids.tolist() == b.pids.tolist()
    assert a.camids.tolist() == b.camids.tolist()
    scale = max(1.0, float(np.abs(a.features).max()))
    assert np.abs(a.features - b.features).max() / scale < tolerance


def test_onnx_features_and_map_match_pytorch_without_importing_torch(
    checkpoint, exported, synth_tiny, tmp_path, cli
):
    script = (
        "import sys\n"
        "from reidkit.cli.app import run\n"
        "code = run(sys.argv[1:])\n"
        "heavy = [m for m in ('torch', 'torchvision', 'timm', 'onnx') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    argv = ["extract", "--onnx", exported, "--dataset", "synthreid", "--root", synth_tiny]
    argv += ["--out", tmp_path / "onnx", *COMMON]
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, argv)],
        capture_output=True,
        text=True,
        env=reidkit_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr  # neither torch nor onnx: onnxruntime, numpy, h5py
    result = json.loads(done.stdout)
    assert result["device"] == "cpu" and [f["rows"] for f in result["files"]] == [48, 136]
    weights = checkpoint / "weights" / "last.pt"
    code, _, err = extract(
        cli, weights, "--dataset", "synthreid", "--root", synth_tiny, "--out", tmp_path / "pt"
    )
    assert code == 0, err
    for subset in ("query", "gallery"):
        from_onnx = read_features(tmp_path / "onnx" / f"synthreid-{subset}.h5")
        from_torch = read_features(tmp_path / "pt" / f"synthreid-{subset}.h5")
        assert_same_rows(from_onnx, from_torch)
        provenance = json.loads(from_onnx.attrs["provenance"])
        assert (
            provenance["checkpoint_sha256"]
            == json.loads(from_torch.attrs["provenance"])["checkpoint_sha256"]
        )
        assert provenance["runtime"].startswith("onnxruntime ")
        assert len(provenance["onnx_sha256"]) == 64 and from_onnx.attrs["distance"] == "cosine"
    onnx_metrics, torch_metrics = evaluate(cli, tmp_path / "onnx"), evaluate(cli, tmp_path / "pt")
    assert onnx_metrics["mAP"] == pytest.approx(torch_metrics["mAP"], abs=1e-4)
    assert onnx_metrics["cmc"] == pytest.approx(torch_metrics["cmc"], abs=1e-4)
    # a rerun finds the files up to date
    code, result, err = extract(
        cli, "--onnx", exported, "--dataset", "synthreid", "--root", synth_tiny,
        "--out", tmp_path / "onnx",
    )  # fmt: skip
    assert code == 0 and [f["up_to_date"] for f in result["files"]] == [True, True], err
    # ... but the checkpoint's own extraction does not take them for its own
    code, result, err = extract(
        cli, weights, "--dataset", "synthreid", "--root", synth_tiny, "--out", tmp_path / "onnx"
    )
    assert code == 0 and [f["up_to_date"] for f in result["files"]] == [False, False], err
    assert "onnx_sha256" not in read_features(tmp_path / "onnx" / "synthreid-query.h5").attrs


def test_flip_at_extraction_time_equals_pytorch_flip(
    checkpoint, exported, synth_tiny, tmp_path, cli
):
    data = ["--dataset", "synthreid", "--root", synth_tiny, "--subsets", "query", "--flip"]
    code, _, err = extract(cli, "--onnx", exported, *data, "--out", tmp_path / "onnx")
    assert code == 0, err
    code, _, err = extract(cli, checkpoint / "weights" / "last.pt", *data, "--out", tmp_path / "pt")
    assert code == 0, err
    from_onnx = read_features(tmp_path / "onnx" / "synthreid-query.h5")
    assert from_onnx.attrs["flip"] is True
    assert_same_rows(from_onnx, read_features(tmp_path / "pt" / "synthreid-query.h5"))


def test_onnx_and_pytorch_reruns_are_current_by_one_rule(
    checkpoint, exported, synth_tiny, tmp_path, cli
):
    """An ONNX run's options come from the file's metadata, a PyTorch run's from the
    checkpoint; a file is current only for a run with the same provenance, runtime
    included, and an identical rerun leaves it as it is."""
    weights = checkpoint / "weights" / "last.pt"
    data = ["--dataset", "synthreid", "--root", synth_tiny, "--subsets", "query"]
    data += ["--out", tmp_path / "f"]
    out = tmp_path / "f" / "synthreid-query.h5"

    def run(*args):
        code, result, err = extract(cli, *args, *data)
        assert code == 0, err
        return result["files"][0]["up_to_date"], read_features(out).attrs

    assert run("--onnx", exported, "--flip")[1]["flip"] is True
    up_to_date, attrs = run("--onnx", exported)
    assert not up_to_date and attrs["flip"] is False and "onnx_sha256" in attrs
    written = out.stat().st_ino, out.stat().st_mtime_ns
    assert run("--onnx", exported)[0] is True
    assert (out.stat().st_ino, out.stat().st_mtime_ns) == written
    # the same checkpoint, options and images, another runtime: not each other's file
    up_to_date, attrs = run(weights)
    assert not up_to_date and "onnx_sha256" not in attrs and attrs["image_size"] == [64, 32]
    assert run(weights)[0] is True
    up_to_date, attrs = run("--onnx", exported)
    assert not up_to_date and json.loads(attrs["provenance"])["runtime"].startswith("onnxruntime")


def test_resume_and_skip_bad_with_onnx(exported, synth_tiny, tmp_path, cli, monkeypatch):
    crops = tmp_path / "crops"
    shutil.copytree(synth_tiny / "synthreid" / "bounding_box_test", crops)
    (crops / "0000_c1s1_000000_00.jpg").write_bytes(b"not a jpeg")  # sorts first
    args = ["--onnx", exported, "--images", crops, "--skip-bad", "--batch-size", "4"]
    code, _, err = cli("extract", *args, "--out", tmp_path / "whole", "--json")
    assert code == 0, err
    whole = read_features(tmp_path / "whole" / "crops-images.h5")
    assert len(whole) == len(list(crops.iterdir())) - 1
    assert "0000_c1s1_000000_00.jpg" not in whole.paths
    forward, calls = OnnxRunner.forward, []

    def stop_after_twenty(self, batch, ok):
        calls.append(len(batch))
        if len(calls) > 20:
            raise Interrupted("stopped by the test")
        return forward(self, batch, ok)

    monkeypatch.setattr(OnnxRunner, "forward", stop_after_twenty)
    code, _, err = cli("extract", *args, "--out", tmp_path / "resumed")
    assert code == 130, err
    monkeypatch.setattr(OnnxRunner, "forward", forward)
    code, out, err = cli("extract", *args, "--out", tmp_path / "resumed", "--json")
    assert code == 0, err
    (file,) = json.loads(out)["files"]
    assert file["resumed"] == 64  # the chunk of 16 batches of 4 flushed before the stop
    assert file["skipped"] == [str(crops / "0000_c1s1_000000_00.jpg")]
    resumed = read_features(tmp_path / "resumed" / "crops-images.h5")
    assert resumed.paths == whole.paths
    np.testing.assert_array_equal(resumed.features, whole.features)


def test_threads_reach_onnx_runtime(exported, synth_tiny, tmp_path, cli, monkeypatch):
    """``--threads N`` and REIDKIT_THREADS set ONNX Runtime's threads as they set torch's:
    N intra-op threads and one inter-op thread. Left unset (0), ONNX Runtime would take
    every physical core whatever the command was told."""
    sessions = []
    init = OnnxRunner.__init__

    def recording(self, session, *args):
        sessions.append(session)
        init(self, session, *args)

    monkeypatch.setattr(OnnxRunner, "__init__", recording)
    # two cores to give, also in a one-core pytest-xdist worker (tests/conftest.py)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    args = ["--onnx", exported, "--dataset", "synthreid", "--root", synth_tiny]
    args += ["--out", tmp_path / "f"]
    code, _, err = extract(cli, *args, "--threads", "1")
    assert code == 0, err
    monkeypatch.setenv("REIDKIT_THREADS", "2")
    code, _, err = extract(cli, *args, "--force")
    assert code == 0, err
    options = [session.get_session_options() for session in sessions]
    assert [(o.intra_op_num_threads, o.inter_op_num_threads) for o in options] == [(1, 1), (2, 1)]


def test_a_file_without_metadata_needs_size_and_normalisation(exported, synth_tiny, tmp_path, cli):
    bare = onnx.load(str(exported))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    data = ["--dataset", "synthreid", "--root", synth_tiny, "--subsets", "query"]
    code, _, err = extract(
        cli, "--onnx", tmp_path / "bare.onnx", *data, "--height", "64", "--out", tmp_path / "feats"
    )
    assert code == 2
    assert "bare.onnx: no reidkit metadata, so --width, --mean, --std must be given" in err
    assert not (tmp_path / "feats").exists()
    given = ["--height", "64", "--width", "32", "--mean", "0.485,0.456,0.406"]
    given += ["--std", "0.229,0.224,0.225"]
    code, _, err = extract(
        cli, "--onnx", tmp_path / "bare.onnx", *data, *given, "--out", tmp_path / "a"
    )
    assert code == 0, err
    code, _, err = extract(cli, "--onnx", exported, *data, "--out", tmp_path / "b")
    assert code == 0, err
    a = read_features(tmp_path / "a" / "synthreid-query.h5")
    np.testing.assert_array_equal(
        a.features, read_features(tmp_path / "b" / "synthreid-query.h5").features
    )
    # the resize: a bare file's as asked, a reidkit file's its own (another one is refused)
    from reidkit.deploy.runtime import onnx_runner

    bare = onnx_runner(tmp_path / "bare.onnx", height=64, width=32, mean=[0.5] * 3,
                       std=[0.2] * 3, interpolation="bicubic")  # fmt: skip
    assert bare.info.interpolation == "bicubic"
    with pytest.raises(UsageError, match="exported for images resized bilinear"):
        onnx_runner(exported, interpolation="bicubic")


def test_bad_onnx_input_exits_with_one_line(checkpoint, exported, synth_tiny, tmp_path, cli):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("hello")
    helper = onnx.helper
    tensor = helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["images"], ["features"])],
        "g",
        [tensor],
        [helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, [None, 4])],
    )
    future = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 40)])
    onnx.save(future, str(tmp_path / "future.onnx"))
    newer = onnx.load(str(exported))
    next(p for p in newer.metadata_props if p.key == "reidkit_format").value = "reidkit.onnx/9"
    other_format = tmp_path / "other.onnx"
    onnx.save(newer, str(other_format))
    data = ["--dataset", "synthreid", "--root", synth_tiny, "--out", tmp_path / "feats"]
    cases = [
        (("--onnx", garbage), 1, "garbage.onnx: ONNX Runtime cannot run it: Protobuf parsing"),
        (("--onnx", tmp_path / "future.onnx"), 1, "ONNX Runtime cannot run it: ONNX Runtime only"),
        (("--onnx", tmp_path / "missing.onnx"), 2, "missing.onnx: no such file"),
        (("--onnx", exported, "--amp", "bf16"), 2, "--amp is for PyTorch models"),
        (("--onnx", exported, "--height", "128"), 2, "was exported for height 64"),
        (("--onnx", exported, "--workers", "2"), 2, "--workers: with --onnx images are decoded"),
        ((checkpoint / "weights" / "last.pt", "--onnx", exported), 2, "not CHECKPOINT and --onnx"),
        ((checkpoint / "weights" / "last.pt", "--mean", "0.5,0.5,0.5"), 2, "--mean is for --onnx"),
        (("--onnx", exported, "--std", "1,2"), 2, "--std 1,2: give three numbers"),
        (("--onnx", exported, "--seed", "3"), 2, "--seed is for PyTorch models"),
        (("--onnx", exported, "--device", "cuda:1"), 2, "--device cuda:1: with --onnx, use"),
        ((checkpoint / "weights" / "last.pt", "--seed", "3"), 2, "--seed is for --model"),
        (("--onnx", other_format), 1, "other.onnx: reidkit metadata of format 'reidkit.onnx/9'"),
    ]
    for args, exit_code, message in cases:
        code, _, err = extract(cli, *args, *data)
        lines = err.strip().splitlines()
        assert code == exit_code and message in lines[0] and len(lines) <= 2, (args, err)
        assert not (tmp_path / "feats").exists(), args


def test_without_onnxruntime_extract_says_how_to_install(
    exported, synth_tiny, tmp_path, cli, monkeypatch
):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, _, err = extract(cli, "--onnx", exported, "--dataset", "synthreid", "--root", synth_tiny)
    assert code == 2 and "error: ONNX Runtime is not installed" in err
    assert "pip install 'reidkit[onnx]'" in err


def test_a_float16_graphs_files_are_not_mixed_with_float32_ones(tmp_path):
    from reidkit.errors import UsageError
    from reidkit.features.origin import check_same_origin
    from reidkit.features.writer import write_features

    def feature_file(name, **attrs):
        write_features(
            tmp_path / name, np.ones((2, 4), np.float32), np.array([1, 2]), np.array([0, 1]),
            attrs={"model": "resnet18", "checkpoint_sha256": "ab", **attrs},
        )  # fmt: skip
        return read_features(tmp_path / name)

    torch_file, onnx_fp32 = feature_file("pt.h5"), feature_file("fp32.h5", onnx_half=False)
    check_same_origin(torch_file, onnx_fp32)  # the same model, the same precision
    with pytest.raises(UsageError, match="float16 ONNX graph"):
        check_same_origin(torch_file, feature_file("fp16.h5", onnx_half=True))


def test_a_graph_input_that_extraction_cannot_feed_is_refused_up_front(
    exported, synth_tiny, tmp_path, cli
):
    helper = onnx.helper
    vector = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g", [vector],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 4])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]),
              str(tmp_path / "vector.onnx"))  # fmt: skip
    bare = onnx.load(str(exported))  # built for 64x32, its metadata gone
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    norm = ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]
    data = ["--dataset", "synthreid", "--root", synth_tiny, "--out", tmp_path / "feats"]
    cases = [
        (tmp_path / "vector.onnx", ["--height", "64", "--width", "32"],
         "vector.onnx: its input 'x' is tensor(float) of shape [None, 4], not a batch of "
         "images (uint8 or float32, N x 3 x height x width)", None),
        (tmp_path / "bare.onnx", ["--height", "128", "--width", "64"],
         "bare.onnx: the graph takes 64x32 images, not the --height 128 --width 64 asked for",
         "hint: give --height 64 --width 32"),
    ]  # fmt: skip
    for path, size, message, hint in cases:
        code, _, err = extract(cli, "--onnx", path, *size, *norm, *data)
        lines = err.strip().splitlines()
        assert code == 2 and lines[0] == f"error: {path.parent}/{message}", err
        assert lines[1:] == ([hint] if hint else [])
        assert not (tmp_path / "feats").exists()


@pytest.mark.parametrize(
    "option, hint",
    [
        (["--weights", "w.pth"], "hint: the graph's weights and options are fixed when it is "
         "exported: give them to reidkit export (--model NAME --weights FILE ...), then extract "
         "--onnx that file"),
        (["--no-bnneck"], "hint: the graph's weights and options are fixed when it is "
         "exported: give them to reidkit export (--model NAME --weights FILE ...), then extract "
         "--onnx that file"),
        (["--amp", "bf16"], "hint: reidkit export --half makes a float16 graph"),
        (["--channels-last"], "hint: ONNX Runtime picks its own memory layout: leave it out"),
        (["--no-fold-bn"], "hint: ONNX Runtime folds BatchNorm itself: leave it out"),
    ],
)  # fmt: skip
def test_pytorch_options_with_onnx_say_what_to_do_instead(
    exported, synth_tiny, tmp_path, cli, option, hint
):
    (tmp_path / "w.pth").write_bytes(b"")
    code, _, err = extract(cli, "--onnx", exported, "--dataset", "synthreid", "--root",
                           synth_tiny, *option, "--out", tmp_path / "feats")  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2 and lines[-2].startswith(f"error: {option[0]} is for PyTorch models")
    assert lines[-1] == hint and not (tmp_path / "feats").exists()
