from __future__ import annotations

import json
import os
import pty
import subprocess

import pytest
from helpers import MARKET_SPEC, REPO, reidkit_argv, reidkit_env, run_reidkit


def test_list_marks_present_datasets(market_tree, cli):
    code, out, _ = cli("datasets", "list", "--root", market_tree.root, "--json")
    rows = {r["name"]: r for r in json.loads(out)["datasets"]}
    assert code == 0
    assert set(rows) == {
        "market1501", "dukemtmcreid", "msmt17", "synthreid", "cuhk03-labeled", "cuhk03-detected",
        "cuhk03-classic-labeled", "cuhk03-classic-detected", "mars", "dukemtmcvidreid",
        "ilidsvid", "prid2011", "synthreid-video", "synthreid-b",
    }  # fmt: skip
    assert rows["market1501"]["present"] and not rows["msmt17"]["present"]
    assert (
        rows["synthreid"]["obtain"]
        == f"reidkit datasets synth --root {market_tree.root} --preset small"
    )
    assert (
        rows["synthreid-b"]["obtain"]
        == f"reidkit datasets synth --root {market_tree.root} --preset small --network b"
    )


def test_summary_json_schema(market_tree, cli):
    code, out, err = cli("datasets", "summary", "market1501", "--root", market_tree.root, "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"dataset", "root", "kind", "subsets", "junk_images", "unparsed_files"}
    assert result["kind"] == "image"
    assert set(result["subsets"]) == {"train", "query", "gallery"}
    assert result["subsets"]["train"] == {
        "ids": 3,
        "images": len(MARKET_SPEC["bounding_box_train"]),
        "cameras": 6,
    }
    assert result["root"] == str(market_tree.base)
    assert "# images" not in err  # the table is for people, not shown with --json


def test_bad_manifest_row_exit_2_with_file_and_line(tmp_path, cli):
    manifest = tmp_path / "m.csv"
    manifest.write_text("a.jpg,1,0,train\nb.jpg,one,0,train\n")
    code, out, err = cli("datasets", "summary", manifest)
    assert code == 2 and out == ""
    assert err.splitlines()[0] == f"error: {manifest}:2: pid 'one' is not an integer"
    assert err.splitlines()[1].startswith("hint: manifest rows are path,pid,camid,subset")


def test_combine_writes_manifest_and_reports(market_tree, tmp_path, cli):
    out_csv = tmp_path / "out" / "combined.csv"
    code, out, _ = cli(
        "datasets", "combine", "market1501", "--root", market_tree.root, "--out", out_csv, "--json"
    )
    result = json.loads(out)
    assert code == 0 and out_csv.is_file()
    assert result["manifest"] == str(out_csv) and result["train_ids"] == 3
    assert result["rows"] == len(out_csv.read_text().splitlines()) - 1
    code, out, _ = cli("datasets", "summary", out_csv, "--json")
    assert json.loads(out)["subsets"]["train"]["ids"] == 3


def test_combine_unknown_source_is_usage_error_and_writes_nothing(market_tree, tmp_path, cli):
    out_csv = tmp_path / "c.csv"
    code, _, err = cli(
        "datasets",
        "combine",
        "market1501",
        "dukemtmc",
        "--root",
        market_tree.root,
        "--out",
        out_csv,
    )
    assert code == 2 and "did you mean 'dukemtmcreid'" in err
    assert not out_csv.exists()


def test_progress_is_plain_log_lines_without_a_terminal(tmp_path):
    done = run_reidkit(
        "datasets",
        "synth",
        "--root",
        tmp_path,
        "--preset",
        "tiny",
        env={"REIDKIT_PROGRESS_INTERVAL": "0"},
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if " INFO synthreid: " in line]
    assert len(lines) >= 2 and "352/352 (100%)" in lines[-1]
    assert "\x1b[" not in done.stderr


@pytest.mark.parametrize("value", ["abc", "-1"])
def test_a_progress_interval_that_is_no_number_is_a_usage_error(tmp_path, value):
    done = run_reidkit(
        "datasets", "synth", "--root", tmp_path, "--preset", "tiny",
        env={"REIDKIT_PROGRESS_INTERVAL": value},
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        f"error: REIDKIT_PROGRESS_INTERVAL='{value}' must be a non-negative number"
    )


def test_progress_is_a_bar_on_a_terminal(tmp_path):
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        reidkit_argv("datasets", "synth", "--root", tmp_path, "--preset", "tiny"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env=reidkit_env(TERM="xterm", COLUMNS="100"),
        cwd=REPO,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "━" in screen and "352/352" in screen  # rich's bar and its M/N column
    assert " INFO synthreid:" not in screen
