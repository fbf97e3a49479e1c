"""synthreid's second camera network (``datasets synth --network b``): its own dataset, the
same plan seen by other cameras and worn by other people."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.data import load_dataset
from reidkit.data.synth import generate
from reidkit.data.synth.writer import MARKER


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> Path:
    """A root holding the tiny preset of both networks, seed 0."""
    root = tmp_path_factory.mktemp("networks")
    generate(root, "tiny", seed=0, workers=2)
    generate(root, "tiny", seed=0, network="b", workers=2)
    return root


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.jpg"))


def test_network_b_is_its_own_dataset_with_the_same_plan_and_other_pixels(both, cli):
    a, b = load_dataset("synthreid", both), load_dataset("synthreid-b", both)
    assert b.name == "synthreid-b" and b.summary()["subsets"] == a.summary()["subsets"]
    files_a, files_b = _files(both / "synthreid"), _files(both / "synthreid-b")
    names = [p.relative_to(both / "synthreid") for p in files_a]
    assert names == [p.relative_to(both / "synthreid-b") for p in files_b]  # same plan
    assert all(x.read_bytes() != y.read_bytes() for x, y in zip(files_a, files_b, strict=True))
    assert json.loads((both / "synthreid-b" / MARKER).read_text())["network"] == "b"
    code, out, _ = cli("datasets", "synth", "--root", both, "--preset", "tiny", "--network", "b")
    assert code == 0 and "is up to date" in out


def test_network_b_is_darker_and_less_saturated(both):
    """Evening light and washed-out colour: b's crops average under a's luminance and
    saturation (measured on the small preset: 81 against 99, and 67 against 89, of 255)."""

    def mean(folder: Path, mode: str, channel: int) -> float:
        crops = _files(folder / "bounding_box_train")
        return float(
            np.mean([np.asarray(Image.open(p).convert(mode))[..., channel].mean() for p in crops])
        )

    assert mean(both / "synthreid-b", "YCbCr", 0) < 0.9 * mean(both / "synthreid", "YCbCr", 0)
    assert mean(both / "synthreid-b", "HSV", 1) < 0.9 * mean(both / "synthreid", "HSV", 1)


def test_a_marker_from_before_networks_is_network_a(tmp_path, cli):
    generate(tmp_path, "tiny", seed=0, workers=2)
    marker = tmp_path / "synthreid" / MARKER
    written = json.loads(marker.read_text())
    del written["network"]
    marker.write_text(json.dumps(written))
    assert generate(tmp_path, "tiny", seed=0)["up_to_date"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--network", "c"], "unknown --network 'c'; choose one of a, b"),
        (
            ["--network", "b", "--preset", "video-tiny"],
            "--network b renders images only; preset video-tiny is a video preset",
        ),
    ],
)
def test_network_options_that_cannot_be_honoured_exit_2(tmp_path, cli, args, message):
    code, out, err = cli("datasets", "synth", "--root", tmp_path, *args)
    assert code == 2 and message in err and out == ""
    assert not any(tmp_path.iterdir())
