"""reidkit compare: evaluations side by side, CMC curves overlaid in one figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from toy_case import make_case

from reidkit.vis.plots import Curve, curve_from_result, plot_cmc


@pytest.fixture
def case(tmp_path):
    return make_case(tmp_path)


@pytest.fixture
def results(cli, case, tmp_path):
    """Two evaluate --json outputs (plain and re-ranked) and a visrank summary."""
    paths = []
    for name, extra in (("plain", []), ("reranked", ["--rerank", "--k1", "6", "--k2", "3"])):
        code, out, err = cli("evaluate", case.query, case.gallery, "--json", *extra)
        assert code == 0, err
        path = tmp_path / f"{name}.json"
        path.write_text(out)
        paths.append(path)
    code, _, err = cli(
        "visrank", case.query, case.gallery, "--out", tmp_path / "vis", "--no-images", "--no-plots"
    )
    assert code == 0, err
    return [*paths, tmp_path / "vis" / "summary.json"]


def test_table_and_json(cli, results):
    code, out, err = cli("compare", *results, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert [r["label"] for r in doc["results"]] == ["plain", "reranked", "summary"]
    for row, path in zip(doc["results"], results, strict=True):
        source = json.loads(path.read_text())
        source = source.get("evaluation", source)
        assert row["mAP"] == source["mAP"] and row["cmc"] == source["cmc"]
        assert row["path"] == str(path)
    assert doc["results"][0]["mAP"] == doc["results"][2]["mAP"]  # visrank = evaluate
    assert doc["results"][1]["rerank"] == {
        "k1": 6,
        "k2": 3,
        "lambda": 0.3,
        "pool": "valid",
        "input": "euclidean distances, squared by the algorithm",
    }
    assert doc["plot"] is None
    code, out, _ = cli("compare", *results[:2], "--label", "A", "--label", "B")
    assert code == 0
    assert "A" in out and "B" in out and "Rank-1" in out and "mAP" in out


def test_overlay_plot(cli, results, tmp_path):
    code, out, err = cli(
        "compare", *results[:2], "--label", "baseline", "--label", "re-ranked",
        "--plot", tmp_path / "cmc.png", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["plot"] == str(tmp_path / "cmc.png")
    with Image.open(tmp_path / "cmc.png") as image:
        assert image.format == "PNG" and image.size == (640, 440)
        rgb = np.asarray(image.convert("RGB")).reshape(-1, 3)
    # matplotlib's first two line colours (tab:blue, tab:orange): a curve and legend line each
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(rgb.astype(int) - colour).sum(1) < 10).sum() > 30, colour


def test_curve_from_result_prefers_the_full_curve():
    full = curve_from_result({"cmc": {"1": 0.5}, "cmc_curve": [0.5, 0.6, 0.7]}, "a")
    assert full.ranks.tolist() == [1, 2, 3] and full.values.tolist() == [0.5, 0.6, 0.7]
    points = curve_from_result({"cmc": {"10": 0.9, "1": 0.5, "5": 0.8}}, "b")
    assert points.ranks.tolist() == [1, 5, 10] and points.values.tolist() == [0.5, 0.8, 0.9]


def test_plot_cmc_legend_names_every_curve(tmp_path):
    curves = [Curve(n, np.arange(1, 4), np.array([0.2, 0.4, 0.6])) for n in ("x", "y")]
    path = plot_cmc(curves, tmp_path / "c.png")
    assert path.is_file() and path.stat().st_size > 5000


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (None, 2, "evaluation file not found"),
        ("{not json", 1, "not valid JSON (line 1"),
        ('{"mAP": 0.5}', 1, "not an evaluation result (no mAP and cmc)"),
    ],
)
def test_bad_result_files(cli, results, tmp_path, content, code, message):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    got, _, err = cli("compare", results[0], bad)
    assert got == code
    assert message in err and "bad.json" in err


def test_label_count_must_match(cli, results):
    code, _, err = cli("compare", *results, "--label", "only-one")
    assert code == 2 and "1 --label value(s) for 3 result(s)" in err


@pytest.mark.parametrize(
    "suffix, magic", [(".pdf", b"%PDF"), (".svg", b"<?xml"), (".PNG", b"\x89PNG")]
)
def test_the_plot_is_written_in_the_format_its_name_asks_for(cli, results, tmp_path, suffix, magic):
    plot = tmp_path / f"cmc{suffix}"
    code, _, err = cli("compare", *results[:2], "--plot", plot)
    assert code == 0, err
    assert plot.read_bytes().startswith(magic)


@pytest.mark.parametrize("name", ["cmc.gif", "cmc"])
def test_a_plot_name_of_another_format_is_refused_before_any_work(cli, results, tmp_path, name):
    code, out, err = cli("compare", *results[:2], "--plot", tmp_path / name)
    suffix = ".gif" if name.endswith(".gif") else "a name without a suffix"
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == (
        f"error: --plot {tmp_path / name}: a plot is written as .png, .pdf, .svg, not {suffix}"
    )
    assert not (tmp_path / name).exists()


def test_a_feature_file_is_not_an_evaluation(cli, case, results):
    code, _, err = cli("compare", results[0], case.query)
    lines = err.strip().splitlines()
    assert code == 1 and lines[-2] == (
        f"error: {case.query}: not an evaluation result: it is an HDF5 file (a feature file?)"
    )
    assert (
        lines[-1]
        == "hint: save one with: reidkit evaluate QUERY.h5 GALLERY.h5 --json > result.json"
    )
