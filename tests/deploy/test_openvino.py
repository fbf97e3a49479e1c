"""reidkit extract --onnx FILE --runtime openvino: the same file as ONNX Runtime's (to the
export tolerance), the same mAP, without torch or ONNX Runtime; the runtime is provenance."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import reidkit_env

from reidkit.features.store import read_features

DATA = ["--subsets", "query,gallery", "--json"]


def test_openvino_gives_onnx_runtimes_features_and_map_without_torch(
    exported, synth_tiny, tmp_path, cli
):
    script = (
        "import sys\n"
        "from reidkit.cli.app import run\n"
        "code = run(sys.argv[1:])\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    data = ["--dataset", "synthreid", "--root", synth_tiny, *DATA]
    argv = ["extract", "--onnx", exported, "--runtime", "openvino", "--out", tmp_path / "ov"]
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, argv + data)],
        capture_output=True, text=True, env=reidkit_env(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr  # openvino, numpy, h5py and pillow only
    assert [f["rows"] for f in json.loads(done.stdout)["files"]] == [48, 136]
    code, out, err = cli("extract", "--onnx", exported, "--out", tmp_path / "ort", *data)
    assert code == 0, err
    maps = []
    for subset in ("query", "gallery"):
        ov, ort = (read_features(tmp_path / k / f"synthreid-{subset}.h5") for k in ("ov", "ort"))
        assert ov.pids.tolist() == ort.pids.tolist()
        scale = max(1.0, float(np.abs(ort.features).max()))
        assert np.abs(ov.features - ort.features).max() / scale < 1e-5
        runtimes = [json.loads(f.attrs["provenance"])["runtime"].split()[0] for f in (ov, ort)]
        assert runtimes == ["openvino", "onnxruntime"]
    for folder in ("ov", "ort"):
        code, out, err = cli("evaluate", tmp_path / folder / "synthreid-query.h5",
                             tmp_path / folder / "synthreid-gallery.h5", "--json")  # fmt: skip
        assert code == 0, err
        maps.append(json.loads(out)["mAP"])
    assert maps[0] == pytest.approx(maps[1], abs=1e-6)
    # the runtime is part of how the files were made: the other one makes them again
    code, out, err = cli("extract", "--onnx", exported, "--out", tmp_path / "ov", *data)
    assert code == 0 and [f["up_to_date"] for f in json.loads(out)["files"]] == [False] * 2


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--runtime", "tensorrt"], 2, "--runtime tensorrt: choose from onnxruntime, openvino"),
        (["--runtime", "openvino", "--device", "cuda"], 2, "reidkit runs OpenVINO on the CPU"),
    ],
)
def test_runtime_options_are_checked(exported, synth_tiny, tmp_path, cli, args, code, message):
    got, _, err = cli("extract", "--onnx", exported, "--dataset", "synthreid", "--root",
                      synth_tiny, "--out", tmp_path / "f", *args)  # fmt: skip
    assert got == code and message in err, err
    assert not (tmp_path / "f").exists()


def test_a_runtime_without_an_onnx_file_is_refused(checkpoint, synth_tiny, tmp_path, cli):
    weights = checkpoint / "weights" / "last.pt"
    code, _, err = cli("extract", weights, "--runtime", "openvino", "--dataset", "synthreid",
                       "--root", synth_tiny, "--out", tmp_path / "f")  # fmt: skip
    assert code == 2 and "--runtime openvino runs an exported graph: give --onnx FILE" in err


def test_without_openvino_extract_says_how_to_install(
    exported, synth_tiny, tmp_path, cli, monkeypatch
):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails
    code, _, err = cli("extract", "--onnx", exported, "--runtime", "openvino", "--dataset",
                       "synthreid", "--root", synth_tiny, "--out", tmp_path / "f")  # fmt: skip
    assert code == 2 and "error: OpenVINO is not installed" in err
    assert "pip install 'reidkit[openvino]'" in err
