from __future__ import annotations

import pytest
from helpers import REPO, run_reidkit

from reidkit.cli.completion import completion_script

FILES = {"bash": "reidkit.bash", "zsh": "_reidkit", "fish": "reidkit.fish"}


@pytest.mark.parametrize("shell", sorted(FILES))
def test_checked_in_scripts_are_current(shell, cli):
    code, out, _ = cli("completion", shell)
    assert code == 0 and out == completion_script(shell)
    stored = (REPO / "completions" / FILES[shell]).read_text()
    assert stored == out, f"completions/{FILES[shell]} is stale: see completions/README.md"


def test_unknown_shell(cli):
    code, out, err = cli("completion", "tcsh")
    assert code == 2 and out == "" and "tcsh" in err


def bash_complete(line: str) -> list[str]:
    words = line.split(" ")
    done = run_reidkit(
        env={
            "_REIDKIT_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
        }
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_commands_complete():
    assert bash_complete("reidkit data") == ["datasets"]
    assert set(bash_complete("reidkit datasets ")) >= {"list", "summary", "combine", "synth"}


def test_dataset_names_complete():
    assert bash_complete("reidkit datasets summary m") == ["market1501", "msmt17", "mars"]
    assert bash_complete("reidkit datasets combine market1501 s") == [
        "synthreid",
        "synthreid-b",
        "synthreid-video",
    ]


def test_presets_complete():
    assert bash_complete("reidkit datasets synth --preset t") == ["tiny"]


def test_model_names_complete():
    assert bash_complete("reidkit extract --model osnet_x0_") == [
        "osnet_x0_75",
        "osnet_x0_5",
        "osnet_x0_25",
    ]
    assert set(bash_complete("reidkit ")) >= {"datasets", "models", "extract", "evaluate"}
