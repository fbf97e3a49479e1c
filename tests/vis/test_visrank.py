"""reidkit visrank: ranked.csv agrees with the evaluate ranking; pictures, HTML and plots."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from toy_case import make_case

from reidkit.fileio import file_lock
from reidkit.metrics.evaluate import read_pair
from reidkit.metrics.ranking import Ranking, Rerank
from reidkit.vis import visrank as visrank_module
from reidkit.vis.strip import (
    IGNORED_COLOUR,
    MATCH_COLOUR,
    PLACEHOLDER,
    QUERY_COLOUR,
    WRONG_COLOUR,
    Layout,
)


@pytest.fixture
def case(tmp_path):
    return make_case(tmp_path)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def by_ordinal(rows: list[dict]) -> dict[int, list[dict]]:
    groups: dict[int, list[dict]] = {}
    for row in rows:
        groups.setdefault(int(row["ordinal"]), []).append(row)
    return groups


def evaluate_ranking(case, *, metric, protocol, rerank, k):
    """Each query's expected list from the distances evaluate uses, by a full stable sort:
    (gallery index, rank or 0, ignored reason, distance) up to the k-th ranked item."""
    ranking = Ranking(
        metric=metric, protocol=protocol, rerank=Rerank(k1=6, k2=3, lam=0.3) if rerank else None,
        device="cpu",
    )  # fmt: skip
    query, gallery = read_pair(case.query, case.gallery)
    dist = np.concatenate([d for _, _, d in ranking.resolve(query, gallery).blocks(query, gallery)])
    lists = []
    for i in range(len(case.q_pids)):
        items, ranked = [], 0
        for g in np.argsort(dist[i], kind="stable"):
            if case.g_pids[g] == -1:
                reason = "junk"
            elif (
                protocol != "none"
                and case.g_pids[g] == case.q_pids[i]
                and case.g_cams[g] == case.q_cams[i]
            ):
                reason = "same camera"
            else:
                reason = ""
            if not reason:
                ranked += 1
            items.append((int(g), 0 if reason else ranked, reason, float(dist[i, g])))
            if ranked == k:
                break
        lists.append(items)
    return lists


@pytest.mark.parametrize(
    ("metric", "protocol", "rerank"),
    [("euclidean", "market", False), ("cosine", "none", False), ("euclidean", "market", True)],
)
def test_ranked_csv_agrees_with_evaluate(cli, case, tmp_path, metric, protocol, rerank):
    extra = ["--rerank", "--k1", "6", "--k2", "3"] if rerank else []
    code, _, err = cli(
        "evaluate", case.query, case.gallery, "--metric", metric, "--protocol", protocol,
        "--per-query", tmp_path / "pq.csv", "--device", "cpu", *extra,
    )  # fmt: skip
    assert code == 0, err
    code, out, err = cli(
        "visrank", case.query, case.gallery, "--out", tmp_path / "vis", "--metric", metric,
        "--protocol", protocol, "--topk", "5", "--num-queries", "0", "--order", "input",
        "--no-images", "--no-plots", "--device", "cpu", "--json", *extra,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    per_query = read_csv(tmp_path / "pq.csv")
    expected = evaluate_ranking(case, metric=metric, protocol=protocol, rerank=rerank, k=5)
    groups = by_ordinal(read_csv(tmp_path / "vis" / "ranked.csv"))
    assert sorted(groups) == list(range(1, len(case.q_pids) + 1))
    for ordinal, rows in groups.items():
        q = ordinal - 1  # --order input
        assert {int(r["query_index"]) for r in rows} == {q}
        assert rows[0]["query_path"] == case.q_paths[q]
        assert rows[0]["query_ap"] == per_query[q]["ap"]  # same AP, same formatting
        assert rows[0]["first_match"] == per_query[q]["first_match"]
        got = [
            (int(r["gallery_index"]), int(r["rank"] or 0), r["ignored"], float(r["distance"]))
            for r in rows
        ]
        assert [g[:3] for g in got] == [e[:3] for e in expected[q]], f"query {q}"
        np.testing.assert_allclose([g[3] for g in got], [e[3] for e in expected[q]], atol=1e-5)
        assert [int(r["position"]) for r in rows] == list(range(1, len(rows) + 1))
        for r in rows:
            g = int(r["gallery_index"])
            assert r["gallery_path"] == case.g_paths[g]
            assert int(r["gallery_pid"]) == case.g_pids[g]
            assert int(r["gallery_camid"]) == case.g_cams[g]
            assert r["match"] == str(int(case.g_pids[g] == case.q_pids[q]))
    assert summary["evaluation"]["mAP"] == pytest.approx(
        np.mean([float(r["ap"]) for r in per_query if r["ap"]]), abs=1e-6
    )
    assert summary["queries_shown"] == len(case.q_pids)
    assert summary["images"] == 0 and summary["plots"] == {}
    assert not (tmp_path / "vis" / "ranked").exists()


def test_some_lists_hold_every_kind_of_tile(cli, case, tmp_path):
    """The fixture is worth its salt: junk, same-camera, right and wrong items all appear."""
    code, _, err = cli(
        "visrank", case.query, case.gallery, "--out", tmp_path / "vis", "--num-queries", "0",
        "--no-images", "--no-plots",
    )  # fmt: skip
    assert code == 0, err
    rows = read_csv(tmp_path / "vis" / "ranked.csv")
    kinds = {(r["ignored"], r["match"]) for r in rows}
    assert {("junk", "0"), ("same camera", "1"), ("", "1"), ("", "0")} <= kinds


def colour_at(image: Image.Image, xy) -> tuple[int, int, int]:
    return image.getpixel(xy)[:3]


def test_pictures_sizes_borders_and_labels(cli, case, tmp_path):
    code, out, err = cli(
        "visrank", case.query, case.gallery, "--out", tmp_path / "vis", "--topk", "4",
        "--num-queries", "5", "--image-format", "png", "--workers", "1", "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["images"] == 5 and summary["missing_images"] == 0
    groups = by_ordinal(read_csv(tmp_path / "vis" / "ranked.csv"))
    layout = Layout()
    names = sorted(p.name for p in (tmp_path / "vis" / "ranked").iterdir())
    assert len(names) == 5
    for ordinal, rows in groups.items():
        name = rows[0]["image"]
        q = int(rows[0]["query_index"])
        stem = Path(case.q_paths[q]).stem
        assert name == f"ranked/{ordinal:04d}_{stem}.png"
        image = Image.open(tmp_path / "vis" / name)
        assert image.size == layout.size(len(rows))
        b = layout.border
        expected = [QUERY_COLOUR] + [
            IGNORED_COLOUR if r["ignored"] else MATCH_COLOUR if r["match"] == "1" else WRONG_COLOUR
            for r in rows
        ]
        for position, colour in enumerate(expected):
            left, top, right, bottom = layout.tile_box(position)
            for xy in ((left, top), (right - 1, bottom - 1), (left + b - 1, (top + bottom) // 2)):
                assert colour_at(image, xy) == colour, (name, position, xy)
            # inside the border: the image, whose colour is the item's own solid colour
            inner = colour_at(image, ((left + right) // 2, (top + bottom) // 2))
            assert inner not in (PLACEHOLDER, colour)
        # the gap between tiles and the space under the header are background
        assert colour_at(image, (layout.tile_box(1)[0] - 2, layout.header + 10)) == (255, 255, 255)


def test_jpeg_pictures_by_default(cli, case, tmp_path):
    code, _, err = cli(
        "visrank", case.query, case.gallery, "--out", tmp_path / "vis", "--topk", "3",
        "--num-queries", "2",
    )  # fmt: skip
    assert code == 0, err
    rows = by_ordinal(read_csv(tmp_path / "vis" / "ranked.csv"))[1]
    image = Image.open(tmp_path / "vis" / rows[0]["image"])
    assert image.format == "JPEG" and image.size == Layout().size(len(rows))
    left, top, *_ = Layout().tile_box(0)
    pixel = colour_at(image, (left + 1, top + 1))
    assert max(abs(a - b) for a, b in zip(pixel, QUERY_COLOUR, strict=True)) < 40


def ap_of(rows):
    return float(rows[0]["query_ap"]) if rows[0]["query_ap"] else None


@pytest.mark.parametrize("order", ["worst", "best"])
def test_order_by_ap(cli, case, tmp_path, order):
    code, _, err = cli(
        "visrank", case.query, case.gallery, "--out", tmp_path / "vis", "--num-queries", "0",
        "--order", order, "--no-images", "--no-plots",
    )  # fmt: skip
    assert code == 0, err
    groups = by_ordinal(read_csv(tmp_path / "vis" / "ranked.csv"))
    aps = [ap_of(groups[o]) for o in sorted(groups)]
    scored = [a for a in aps if a is not None]
    assert scored == sorted(scored, reverse=order == "best")
    assert aps[: len(scored)] == scored  # queries without a valid match come last
    assert len(set(scored)) > 3


def test_num_queries_and_random_order(cli, case, tmp_path):
    def shown(seed, n="6"):
        out = tmp_path / f"vis{seed}"
        code, _, err = cli(
            "visrank", case.query, case.gallery, "--out", out, "--num-queries", n,
            "--order", "random", "--seed", seed, "--no-images", "--no-plots",
        )  # fmt: skip
        assert code == 0, err
        groups = by_ordinal(read_csv(out / "ranked.csv"))
        return [int(groups[o][0]["query_index"]) for o in sorted(groups)]

    first = shown(1)
    assert len(first) == 6 == len(set(first))
    assert shown(1) == first  # seeded
    assert shown(2) != first
    code, out, err = cli(
        "visrank", case.query, case.gallery, "--out", tmp_path / "d", "--no-images",
        "--no-plots", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["queries_shown"] == len(case.q_pids)  # 12 < the default of 20


def test_queries_file(cli, case, tmp_path):
    names = tmp_path / "queries.txt"
    names.write_text(
        f"# queries to look at\n7\n\n{case.q_paths[2]}\n{Path(case.q_paths[5]).name}\n7\n"
    )
    code, out, err = cli(
        "visrank", case.query, case.gallery, "--out", tmp_path / "vis", "--queries", names,
        "--no-images", "--no-plots", "--json",
    )  # fmt: skip
    assert code == 0, err
    groups = by_ordinal(read_csv(tmp_path / "vis" / "ranked.csv"))
    assert [int(groups[o][0]["query_index"]) for o in sorted(groups)] == [7, 2, 5]
    assert json.loads(out)["order"] == "input"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3\n99\n", r"queries\.txt:2: query index 99 is out of range .*12 queries"),
        ("query/nope.jpg\n", r"queries\.txt:1: no such query: 'query/nope\.jpg'"),
        ("# nothing\n", r"queries\.txt: the query list names no query"),
    ],
)
def test_bad_queries_file(cli, case, tmp_path, text, message):
    names = tmp_path / "queries.txt"
    names.write_text(text)
    code, _, err = cli(
        "visrank", case.query, case.gallery, "--out", tmp_path / "vis", "--queries", names
    )
    assert code == 2
    assert re.search(message, err), err
    assert not (tmp_path / "vis").exists()


def test_missing_images_become_placeholders(cli, case, tmp_path):
    (case.root / case.g_paths[0]).unlink()
    for rel in case.q_paths:
        (case.root / rel).unlink()
    code, out, err = cli(
        "visrank", case.query, case.gallery, "--out", tmp_path / "vis", "--num-queries", "2",
        "--image-format", "png", "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["missing_images"] >= 2
    assert re.search(r"image\(s\) not found, drawn as placeholders \(first: .*--root", err)
    image = Image.open(
        tmp_path / "vis" / by_ordinal(read_csv(tmp_path / "vis" / "ranked.csv"))[1][0]["image"]
    )
    left, top, right, _ = Layout().tile_box(0)
    assert colour_at(image, ((left + right) // 2, top + 20)) == PLACEHOLDER
    assert colour_at(image, (left, top)) == QUERY_COLOUR  # still framed


def test_root_overrides_the_stored_root(cli, case, tmp_path):
    moved = tmp_path / "elsewhere" / "toy"
    moved.parent.mkdir()
    case.root.rename(moved)
    args = ("visrank", case.query, case.gallery, "--num-queries", "1", "--no-plots", "--json")
    code, out, _ = cli(*args, "--out", tmp_path / "a")
    assert code == 0 and json.loads(out)["missing_images"] > 0
    for root in (moved, moved.parent):  # the dataset folder, or the data root above it
        code, out, err = cli(*args, "--out", tmp_path / "b", "--root", root)
        assert code == 0, err
        assert json.loads(out)["missing_images"] == 0


def test_files_without_paths(cli, tmp_path):
    from reidkit.features.writer import write_features

    rng = np.random.default_rng(0)
    q = write_features(tmp_path / "q.h5", rng.normal(size=(4, 8)), [1, 2, 1, 2], [0, 0, 1, 1])
    g = write_features(tmp_path / "g.h5", rng.normal(size=(6, 8)), [1, 2] * 3, [1, 1, 0, 0, 2, 2])
    code, _, err = cli("visrank", q, g, "--out", tmp_path / "vis", "--topk", "2")
    assert code == 0, err
    assert "the feature files store no image paths" in err
    rows = read_csv(tmp_path / "vis" / "ranked.csv")
    assert rows[0]["query_path"].startswith("#") and rows[0]["gallery_path"].startswith("#")


def test_html_refers_only_to_files_that_exist(cli, case, tmp_path):
    code, _, err = cli(
        "visrank", case.query, case.gallery, "--out", tmp_path / "vis", "--num-queries", "4",
        "--html",
    )  # fmt: skip
    assert code == 0, err
    page = (tmp_path / "vis" / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len([r for r in refs if r.startswith("ranked/")]) == 8  # a link and a picture each
    assert {"plots/cmc.png", "plots/distances.png", "plots/ap.png", "ranked.csv"} <= set(refs)
    for ref in refs:
        assert not re.match(r"[a-z]+:|/", ref), ref  # relative: opens from the folder
        assert (tmp_path / "vis" / ref).is_file(), ref
    for row in by_ordinal(read_csv(tmp_path / "vis" / "ranked.csv")).values():
        assert row[0]["query_path"] in page
    assert "addEventListener" in page  # sortable columns
    assert page.count("<tr>") == 5  # header and four queries


def test_plots_are_written(cli, case, tmp_path):
    code, out, err = cli(
        "visrank", case.query, case.gallery, "--out", tmp_path / "vis", "--no-images", "--json"
    )
    assert code == 0, err
    plots = json.loads(out)["plots"]
    assert sorted(plots) == ["ap", "cmc", "distances"]
    for rel in plots.values():
        with Image.open(tmp_path / "vis" / rel) as image:
            assert image.format == "PNG" and image.size == (640, 440)
            # something was drawn: many distinct colours, not a blank canvas
            assert len(image.convert("RGB").getcolors(100_000)) > 20


def test_workers_draw_identical_pictures(cli, case, tmp_path):
    for workers in ("1", "2"):
        code, _, err = cli(
            "visrank", case.query, case.gallery, "--out", tmp_path / workers, "--num-queries",
            "0", "--image-format", "png", "--workers", workers, "--no-plots",
        )  # fmt: skip
        assert code == 0, err
    one = sorted((tmp_path / "1" / "ranked").iterdir())
    two = sorted((tmp_path / "2" / "ranked").iterdir())
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 12
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two, strict=True))


def test_out_folder_is_replaced_whole_or_not_at_all(cli, case, tmp_path, monkeypatch):
    out = tmp_path / "vis"
    code, _, _ = cli("visrank", case.query, case.gallery, "--out", out, "--num-queries", "3")
    assert code == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def broken(task):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(visrank_module, "_draw_and_save", broken)
    code, _, err = cli(
        "visrank", case.query, case.gallery, "--out", out, "--num-queries", "5", "--workers", "1"
    )
    assert code == 1 and f"no space left on device while writing {out}" in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    monkeypatch.undo()
    code, _, _ = cli("visrank", case.query, case.gallery, "--out", out, "--num-queries", "2")
    assert code == 0
    assert len(list((out / "ranked").iterdir())) == 2  # no stale pictures from earlier runs


def test_refuses_a_folder_it_did_not_write(cli, case, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = cli("visrank", case.query, case.gallery, "--out", out)
    assert code == 2
    assert "is not a visrank output folder" in err
    assert (out / "notes.txt").read_text() == "keep me"


def test_locked_output(cli, case, tmp_path):
    out = tmp_path / "vis"
    with file_lock(out):
        code, _, err = cli("visrank", case.query, case.gallery, "--out", out)
    assert code == 75 and "being written by another reidkit process" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--topk", "0"], "--topk"),
        (["--order", "sideways"], "unknown --order 'sideways'"),
        (["--image-format", "gif"], "unknown --image-format 'gif'"),
        (["--metric", "manhattan"], "manhattan"),
        (["--protocol", "duke"], "unknown protocol 'duke'"),
        (["--num-queries", "-1"], "--num-queries"),
    ],
)
def test_bad_options(cli, case, tmp_path, args, message):
    code, _, err = cli("visrank", case.query, case.gallery, "--out", tmp_path / "vis", *args)
    assert code == 2
    assert message in err
    assert not (tmp_path / "vis").exists()


def test_dimension_mismatch(cli, case, tmp_path):
    other = make_case(tmp_path / "other")
    from reidkit.features.writer import write_features

    narrow = write_features(
        tmp_path / "narrow.h5", other.g_feats[:, :8], other.g_pids, other.g_cams
    )
    code, _, err = cli("visrank", case.query, narrow, "--out", tmp_path / "vis")
    assert code == 2 and "16-dimensional features but" in err


def test_cameras_are_shown_as_the_file_names_count_them(cli, market_tree, tmp_path, monkeypatch):
    """Market-style names count cameras from c1 and camids from 0: a picture and the HTML
    said 'cam 5' for a file named ..._c6s1_...; they show the file's camera now (the CSV
    keeps the camid)."""
    from reidkit.vis import visrank as visrank_module

    feats = tmp_path / "f"
    code, _, err = cli(
        "extract", "--model", "osnet_x0_25", "--dataset", "market1501", "--root",
        market_tree.root, "--out", feats, "--height", "64", "--width", "32",
    )  # fmt: skip
    assert code == 0, err
    drawn = []
    real_draw = visrank_module.draw_strip

    def recording_draw(header, tiles, *args, **kwargs):
        drawn.append((header, [t.lines for t in tiles]))
        return real_draw(header, tiles, *args, **kwargs)

    monkeypatch.setattr(visrank_module, "draw_strip", recording_draw)
    out = tmp_path / "vis"
    code, _, err = cli(
        "visrank", feats / "market1501-query.h5", feats / "market1501-gallery.h5", "--out", out,
        "--num-queries", "0", "--order", "input", "--html", "--workers", "1", "--protocol", "none",
    )  # fmt: skip
    assert code == 0, err
    # the queries are 0003_c1s1_..., 0003_c2s1_... and 0005_c4s1_...
    assert [re.search(r"cam (\d+)", header).group(1) for header, _ in drawn] == ["1", "2", "4"]
    assert [tiles[0][2] for _, tiles in drawn] == ["cam 1", "cam 2", "cam 4"]
    for _, tiles in drawn:
        for lines in tiles[1:]:
            name = next(line for line in lines if line.startswith("pid"))
            assert re.fullmatch(r"pid -?\d+ cam [1-6]", name)
    page = (out / "index.html").read_text()
    cells = re.findall(
        r"<tr><td[^>]*>\d+</td><td[^>]*>[^<]*</td><td[^>]*>\d+</td><td[^>]*>(\d+)</td>", page
    )
    assert cells == ["1", "2", "4"]
    rows = by_ordinal(read_csv(out / "ranked.csv"))
    assert [rows[o][0]["query_camid"] for o in (1, 2, 3)] == ["0", "1", "3"]
