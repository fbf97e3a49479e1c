"""What a newcomer reads: results on stdout (so they pipe into grep), help that states the
defaults, and no noise (a <bool> type beside every flag, one text repeated four times)."""

from __future__ import annotations

import re
import subprocess

from helpers import reidkit_argv, reidkit_env

from reidkit.config import Config
from reidkit.engine.demo import DEMO_EPOCHS, demo_config
from reidkit.models import list_models


def test_a_commands_result_goes_to_stdout_and_pipes_into_grep(market_tree, tmp_path):
    """`reidkit models list | grep resnet` found nothing: the table was on stderr."""
    command = " ".join(reidkit_argv("models", "list", "'resnet5*'"))
    listing = subprocess.run(
        f"{command} | grep -w resnet50",
        shell=True, capture_output=True, text=True, env=reidkit_env(), cwd=tmp_path,
    )  # fmt: skip
    assert listing.returncode == 0
    (row,) = listing.stdout.splitlines()
    assert re.search(r"resnet50\s+│\s+23\.51\s+│\s+2048", row)
    assert "\x1b[" not in listing.stdout  # no colour codes into a pipe


def test_tables_and_summary_lines_are_on_stdout_and_stderr_keeps_the_logs(market_tree, cli):
    code, out, err = cli("datasets", "summary", "market1501", "--root", market_tree.root)
    assert code == 0
    train_row = next(line for line in out.splitlines() if "train" in line)
    assert [c.strip() for c in train_row.strip("│┃ ").split("│")] == ["train", "3", "8", "6"]
    assert "junk images: 2, unparsed files: 2" in out
    assert "# images" not in err and "do not follow the naming rule" in err  # a warning
    code, out, err = cli("-q", "datasets", "summary", "market1501", "--root", market_tree.root)
    assert code == 0 and "# images" in out and err == ""  # -q silences stderr only


def test_datasets_list_says_the_cuhk03_steps_once(tmp_path, cli):
    code, out, _ = cli("datasets", "list", "--root", tmp_path)
    assert code == 0
    assert out.count("request it from its authors (CUHK)") == 1
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    for variant in ("cuhk03-detected", "cuhk03-classic-labeled", "cuhk03-classic-detected"):
        assert "as cuhk03-labeled" in rows[variant]


def test_a_dataset_folder_without_images_is_an_error(tmp_path, cli):
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        (tmp_path / "empty" / sub).mkdir(parents=True)
    (tmp_path / "empty" / "query" / "IMG_0001.jpg").write_bytes(b"")
    code, out, err = cli("datasets", "summary", tmp_path / "empty")
    assert (code, out) == (2, "")
    assert [line for line in err.splitlines() if line.startswith(("error", "hint"))] == [
        f"error: empty: no images in {tmp_path / 'empty'}; 1 file(s) there do not follow "
        "its naming rule",
        "hint: is it the right folder?",
    ]


def help_text(cli, *command) -> str:
    code, out, _ = cli(*command, "--help")
    assert code == 0
    return " ".join(out.split())  # as one line: independent of the wrapping


def test_flags_carry_no_value_type_in_help(cli):
    for command in (("train",), ("evaluate",), ("demo",), ("datasets", "synth")):
        text = help_text(cli, *command)
        assert "<bool>" not in text, command
        assert "--json Print one JSON document" in text


def test_demo_help_states_the_epochs_it_trains(cli):
    assert f"Training epochs. [default: {DEMO_EPOCHS}; x>=1]" in help_text(cli, "demo")
    assert demo_config("data").train.epochs == DEMO_EPOCHS


def test_train_help_states_defaults_models_and_weights(cli):
    text = help_text(cli, "train")
    d = Config()
    assert f"(model.name; default {d.model.name}): {', '.join(list_models())}." in text
    assert f"(train.epochs; default {d.train.epochs})" in text
    assert f"(data.batch_size; default {d.data.batch_size})" in text
    assert f"(optim.lr; default {d.optim.lr})" in text
    assert (
        "--pretrained imagenet|none|FILE Starting weights (model.pretrained; default imagenet)"
        in text
    )
    assert "--allow-partial" in text and "(model.allow_partial)" in text
    assert "'reidkit train --print-config' lists every key with its value" in text


def test_help_text_in_square_brackets_is_shown_not_taken_for_markup(cli):
    assert "(default: OMP_NUM_THREADS if set" in help_text(cli, "evaluate")
    assert "[env var: REIDKIT_THREADS" in help_text(cli, "evaluate")
