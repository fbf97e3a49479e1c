"""reidkit export --int8: a statically quantised graph, calibrated on the checkpoint's
training images, kept only when its mAP stays within the limit of the fp32 graph's; and
extract --onnx runs it.

The figures the export records are checked against paths that do not go through the
export's own check: ``extract`` (PyTorch, and ONNX Runtime on the written file) and
``evaluate`` on the feature files they write.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import onnx
import pytest
from helpers import command_state_restored

from reidkit.cli.app import run
from reidkit.features.store import read_features


def props(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def evaluated_map(cli, folder) -> float:
    code, out, err = cli(
        "evaluate", folder / "synthreid-query.h5", folder / "synthreid-gallery.h5", "--json"
    )
    assert code == 0, err
    return json.loads(out)["mAP"]


@pytest.fixture(scope="module")
def int8_export(checkpoint, tmp_path_factory):
    """``reidkit export RUN --int8 --out q.onnx --json``: (file, printed result)."""
    out = tmp_path_factory.mktemp("int8") / "q.onnx"
    stdout, stderr = io.StringIO(), io.StringIO()
    with command_state_restored(), redirect_stdout(stdout), redirect_stderr(stderr):
        code = run(["export", str(checkpoint), "--int8", "--out", str(out), "--json"])
    assert code == 0, stderr.getvalue()
    return out, json.loads(stdout.getvalue())


def test_the_int8_graph_is_quantised_calibrated_checked_and_extracted(
    int8_export, checkpoint, exported, synth_tiny, tmp_path, cli
):
    out, result = int8_export
    assert result["int8"] is True
    q = result["verification"]["int8"]
    # the calibration: the run's dataset (its training set has 160 images, fewer than 256)
    assert q["calibration"] == {"dataset": "synthreid", "images": 256, "method": "minmax",
                                "used": 160}  # fmt: skip
    meta = props(out)
    assert meta["int8"] == "true" and meta["half"] == "false"
    assert json.loads(meta["calibration"]) == {
        "dataset": "synthreid", "images": 256, "method": "minmax",
    }  # fmt: skip
    # quantised: QDQ pairs around the convolutions, int8 weights, a file under a third the size
    graph = onnx.load(str(out)).graph
    ops = Counter(node.op_type for node in graph.node)
    assert ops["QuantizeLinear"] >= 20 and ops["DequantizeLinear"] >= ops["Conv"] == 20
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 20
    assert out.stat().st_size < exported.stat().st_size / 3
    # the recorded check against extract and evaluate, each graph's features made apart
    check = json.loads(meta["int8_check"])
    assert check == result["verification"]["int8"]["retrieval"]
    data = ["--dataset", "synthreid", "--root", synth_tiny]
    code, _, err = cli("extract", "--onnx", out, *data, "--out", tmp_path / "int8", "-q")
    assert code == 0, err
    weights = checkpoint / "weights" / "last.pt"
    code, _, err = cli("extract", weights, *data, "--out", tmp_path / "torch", "-q")
    assert code == 0, err
    assert evaluated_map(cli, tmp_path / "int8") == pytest.approx(check["mAP_int8"], abs=1e-6)
    assert evaluated_map(cli, tmp_path / "torch") == pytest.approx(check["mAP_fp32"], abs=1e-6)
    drop = check["mAP_drop_points"]
    assert drop == pytest.approx(100 * (check["mAP_fp32"] - check["mAP_int8"]), abs=1e-3)
    assert drop <= 1.0 and check["max_map_drop_points"] == 1.0
    assert 0.9 < check["min_cosine_to_fp32"] < 0.9999  # quantised, not the fp32 graph
    # OpenVINO runs the INT8 graph with its own integer kernels: close, not equal
    code, _, err = cli("extract", "--onnx", out, "--runtime", "openvino", *data,
                       "--out", tmp_path / "openvino", "-q")  # fmt: skip
    assert code == 0, err
    assert evaluated_map(cli, tmp_path / "openvino") == pytest.approx(check["mAP_int8"], abs=0.005)
    ov, ort = (read_features(tmp_path / k / "synthreid-query.h5").features
               for k in ("openvino", "int8"))  # fmt: skip
    assert 0 < np.abs(ov - ort).max() < 0.1 * np.abs(ort).max()
    # INT8 features are not fp32 features: evaluate refuses the pair
    code, _, err = cli("evaluate", tmp_path / "int8" / "synthreid-query.h5",
                       tmp_path / "torch" / "synthreid-gallery.h5")  # fmt: skip
    assert code == 2 and "INT8 ONNX graph" in err


def test_an_unchanged_rerun_holds_the_recorded_drop_to_the_limit_asked_for(
    int8_export, exported, checkpoint, tmp_path, cli
):
    """The file's recorded check is edited to a drop of 0.8 points (whatever this CPU's
    int8 kernels gave): a rerun is up to date under the default limit, and exit 1 under
    --max-map-drop 0.5, the file left as it is."""
    from reidkit.deploy.export import int8_check_of
    from reidkit.deploy.metadata import set_metadata

    proto = onnx.load(str(int8_export[0]))
    recorded = json.loads(props(int8_export[0])["int8_check"])
    recorded.update(mAP_fp32=0.5, mAP_int8=0.492, mAP_drop_points=0.8)
    set_metadata(proto, {**props(int8_export[0]), "int8_check": json.dumps(recorded)})
    out = tmp_path / "q.onnx"
    onnx.save(proto, str(out))
    stamp = (out.stat().st_ino, out.stat().st_mtime_ns)
    code, stdout, err = cli("export", checkpoint, "--int8", "--out", out)
    assert code == 0, err
    assert "is up to date" in stdout
    code, _, err = cli("export", checkpoint, "--int8", "--out", out, "--max-map-drop", "0.5")
    assert code == 1
    assert "is 0.80 points below the fp32 graph's (49.20% against 50.00%)" in err
    assert "over the limit of 0.5" in err and f"{out} was left as it is" in err
    assert (out.stat().st_ino, out.stat().st_mtime_ns) == stamp
    assert int8_check_of(exported) is None  # a file without a check is quantised again


def test_the_check_refuses_a_drop_over_the_limit(int8_export, exported, synth_tiny):
    """The check itself, on the two graphs of the checkpoint (the session's fp32 export and
    the INT8 one): a limit under their drop is a DataError that says both mAPs, as the
    export recorded them. (A fresh
    export that fails it writes nothing, as any failed check: build_export raises before
    the file is written.)"""
    from reidkit.deploy.export import exported_as
    from reidkit.deploy.quantize import Calibration, retrieval_check
    from reidkit.errors import DataError

    out, _ = int8_export
    info, _ = exported_as(out)
    recorded = json.loads(props(out)["int8_check"])
    calibration = Calibration("synthreid", str(synth_tiny))
    fp32, int8 = exported.read_bytes(), out.read_bytes()
    drop = recorded["mAP_drop_points"]
    limit = drop - 0.5  # under the drop, whatever its sign
    with pytest.raises(DataError) as refused:
        retrieval_check(fp32, int8, info, calibration, limit)
    assert refused.value.message == (
        f"--int8: the INT8 graph's mAP on synthreid is {drop:.2f} points below the fp32 "
        f"graph's ({100 * recorded['mAP_int8']:.2f}% against {100 * recorded['mAP_fp32']:.2f}%), "
        f"over the limit of {limit:g}; nothing was written"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--int8", "--half"], "--int8 and --half: a graph is quantised to one of them"),
        (["--max-map-drop", "2"], "--max-map-drop applies to an --int8 export only"),
        (["--calibration-images", "8"], "--calibration-images applies to an --int8 export"),
        (["--int8", "--calibration-images", "0"], "--calibration-images 0: must be at least 1"),
    ],
)
def test_int8_options_are_checked(checkpoint, tmp_path, cli, args, message):
    code, _, err = cli("export", checkpoint, "--out", tmp_path / "q.onnx", *args)
    assert code == 2 and message in err, err
    assert not (tmp_path / "q.onnx").exists()


def test_random_weights_need_a_dataset_to_calibrate_on(synth_tiny, tmp_path, cli):
    crops = synth_tiny / "synthreid" / "query"
    code, _, err = cli("export", "--model", "resnet18", "--int8", "--images", crops,
                       "--out", tmp_path / "q.onnx")  # fmt: skip
    assert code == 2 and "--int8 needs images to calibrate on" in err


@pytest.mark.parametrize(("batch", "shapes"), [("dynamic", [32, 32, 6]), ("16", [16] * 5)])
def test_calibration_reads_every_image_one_batch_per_stride(synth_tiny, batch, shapes):
    """ONNX Runtime reads the reader in strides of one batch (set_range), merging each
    batch's ranges: every image is read once, in order; a fixed-batch graph gets batches of
    its size, the last one filled up with repeated images."""
    from reidkit.data import load_dataset
    from reidkit.deploy.metadata import DeployInfo
    from reidkit.deploy.quantize import _Reader

    paths = [s.path for s in load_dataset("synthreid", synth_tiny).train][:70]
    info = DeployInfo(height=64, width=32, mean=[0.5] * 3, std=[0.5] * 3, batch=batch)
    seen = []
    reader = _Reader(paths, info, "images", lambda done, total: seen.append((done, total)))
    assert len(reader) == len(shapes)
    got = []
    for start in range(len(reader)):
        reader.set_range(start, start + 1)
        while (item := reader.get_next()) is not None:
            got.append(item["images"])
    assert [len(x) for x in got] == shapes and reader.get_next() is None
    assert all(x.dtype == np.uint8 and x.shape[1:] == (3, 64, 32) for x in got)
    assert seen[-1] == (70, 70)
    if batch == "16":  # the last batch: images 64-69, then 64-69 again and 64-67
        assert np.array_equal(got[-1][6:12], got[-1][:6])
    with pytest.raises(RuntimeError, match="out of order"):
        reader.set_range(0, 1)
