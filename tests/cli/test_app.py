from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from helpers import REPO, run_reidkit

import reidkit


def test_version(cli):
    code, out, _ = cli("--version")
    assert (code, out) == (0, f"reidkit {reidkit.__version__}\n")


def test_help_does_not_import_heavy_modules():
    script = (
        "import sys\n"
        "from reidkit.cli.app import run\n"
        "code = run(['--help'])\n"
        "code2 = run(['datasets', 'summary', '--help'])\n"
        "names = ('torch', 'h5py', 'matplotlib', 'numpy', 'scipy')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print('HEAVY', heavy, code, code2)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.strip().splitlines()[-1] == "HEAVY [] 0 0"


def test_unknown_command_is_usage_error_with_hint(cli):
    code, out, err = cli("datsets", "list")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: No such command 'datsets'") and "datasets" in lines[0]
    assert lines[1] == "hint: see 'reidkit --help'"


def test_unknown_option_names_the_option(cli):
    code, _, err = cli("datasets", "summary", "synthreid", "--bogus")
    assert code == 2
    assert err.splitlines()[0].startswith("error: No such option: --bogus")
    assert "reidkit datasets summary --help" in err


def test_error_is_one_line_plus_hint_without_traceback(tmp_path):
    done = run_reidkit("datasets", "summary", "market1501", "--root", tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: market1501 not found: expected the folder {tmp_path / 'market1501'}",
        f"hint: reidkit datasets download market1501 --root {tmp_path} "
        f"(or extract Market-1501-v15.09.15.zip into {tmp_path}/market1501/)",
    ]


def test_traceback_only_with_reidkit_debug(tmp_path):
    done = run_reidkit(
        "datasets", "summary", "nope", "--root", tmp_path, env={"REIDKIT_DEBUG": "1"}
    )
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr
    assert "error: unknown dataset 'nope'" in done.stderr


def test_unexpected_exception_is_reported_not_dumped(cli, monkeypatch):
    import reidkit.data.catalog as catalog

    def boom(root):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(catalog, "list_datasets", boom)
    monkeypatch.setattr("reidkit.data.list_datasets", boom)
    code, _, err = cli("datasets", "list")
    assert code == 1
    assert err.splitlines()[0] == "error: unexpected RuntimeError: disk on fire"
    assert "REIDKIT_DEBUG=1" in err and "Traceback" not in err


def test_json_output_is_the_only_stdout(market_tree, cli):
    code, out, err = cli("datasets", "summary", "market1501", "--root", market_tree.root, "--json")
    assert code == 0
    assert json.loads(out)["dataset"] == "market1501"
    assert "image file(s) do not follow the naming rule" in err  # the warning went to stderr


def test_quiet_silences_warnings_but_not_the_result(market_tree, cli):
    code, out, err = cli("datasets", "summary", "market1501", "--root", market_tree.root, "-q")
    assert (code, err) == (0, "") and "# images" in out
    code, out, err = cli("-q", "datasets", "summary", "market1501", "--root", market_tree.root)
    assert (code, err) == (0, "") and "# images" in out


def test_verbose_and_not_quiet_between_runs(market_tree, cli):
    cli("-q", "datasets", "list")
    code, _, err = cli("datasets", "summary", "market1501", "--root", market_tree.root)
    assert code == 0 and "naming rule" in err  # quiet did not stick from the previous run


def test_environment_supplies_options(market_tree, cli, monkeypatch):
    monkeypatch.setenv("REIDKIT_DATA", str(market_tree.root))
    code, out, _ = cli("datasets", "summary", "market1501", "--json")
    assert code == 0 and json.loads(out)["root"] == str(market_tree.base)
    monkeypatch.setenv("REIDKIT_ROOT", "/nonexistent")
    monkeypatch.setenv("REIDKIT_JSON", "1")
    code, out, _ = cli("datasets", "list")
    assert code == 0 and json.loads(out)["root"] == "/nonexistent"


def colour_codes(text: str) -> list[str]:
    """SGR parameters that set a colour (30-37, 38, 40-47, 48, 90-97, 100-107)."""
    params = [p for seq in re.findall(r"\x1b\[([0-9;]*)m", text) for p in seq.split(";") if p]
    return [p for p in params if 30 <= int(p) <= 48 or 90 <= int(p) <= 107]


def test_no_color_is_honoured_even_when_colour_is_forced(market_tree):
    args = ("datasets", "list", "--root", market_tree.root)
    coloured = run_reidkit(*args, env={"FORCE_COLOR": "1"})
    assert colour_codes(coloured.stdout), "the check below would prove nothing"
    plain = run_reidkit(*args, env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert plain.returncode == 0 and "market1501" in plain.stdout
    assert colour_codes(plain.stdout) == []


def test_python_dash_m_is_the_same_command():
    done = run_reidkit("--version")
    assert done.returncode == 0 and done.stdout == f"reidkit {reidkit.__version__}\n"


@pytest.fixture
def stop_dispositions():
    """The SIGINT and SIGTERM dispositions a command starts with (a background job of a
    shell ignores SIGINT), and the test's after it."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, handler in handlers.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_turned_into_another_error_is_still_an_interrupt(
    cli, monkeypatch, stop_dispositions, sig
):
    """A C extension interrupted while it is imported replaces the KeyboardInterrupt with
    "ImportError: initialization failed" (matplotlib's do): that is a stop, not a crash."""

    def import_that_swallows_the_interrupt(root):
        interrupted = False
        try:
            os.kill(os.getpid(), sig)
            time.sleep(5)  # the handler runs here at the latest
        except KeyboardInterrupt:
            interrupted = True
        if interrupted:  # outside the handler: no trace of the KeyboardInterrupt is left
            raise ImportError("initialization failed")

    monkeypatch.setattr("reidkit.data.list_datasets", import_that_swallows_the_interrupt)
    code, out, err = cli("datasets", "list")
    assert (code, out, err) == (130, "", "error: interrupted\n")


def test_an_error_caused_by_an_interrupt_is_an_interrupt(cli, monkeypatch):
    def chained(root):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("worker pool broke") from exc

    monkeypatch.setattr("reidkit.data.list_datasets", chained)
    assert cli("datasets", "list") == (130, "", "error: interrupted\n")


def test_a_signal_of_an_earlier_command_is_forgotten(cli, monkeypatch):
    from reidkit.cli import signals

    signals._received.append(signal.SIGTERM)  # as an earlier run in this process left it

    def boom(root):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("reidkit.data.list_datasets", boom)
    code, _, err = cli("datasets", "list")
    assert code == 1 and err.splitlines()[0] == "error: unexpected RuntimeError: disk on fire"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_interrupt_swallowed_on_the_way_still_stops_the_command(
    cli, monkeypatch, stop_dispositions
):
    """Python prints and drops a KeyboardInterrupt raised inside a finaliser: the command
    goes on to its end, but it was asked to stop, which is no success (exit 130)."""

    class Finaliser:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs here; its KeyboardInterrupt goes nowhere

    def list_datasets(root):
        Finaliser()  # made and dropped at once
        return []

    monkeypatch.setattr("reidkit.data.list_datasets", list_datasets)
    code, _, err = cli("datasets", "list", "--json")
    assert (code, err.splitlines()[-1]) == (130, "error: interrupted")


def test_a_signal_during_a_native_import_waits_for_its_end(
    tmp_path, monkeypatch, stop_dispositions
):
    """An exception must not cross a native library's initialisation (inside torch's it was
    seen to abort the process): the packages of HELD_IMPORTS import whole, then stop."""
    from reidkit.cli import signals

    package = tmp_path / "heldpkg"
    package.mkdir()
    finished = tmp_path / "finished"
    (package / "__init__.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(0.2)  # the handler has run by now\n"
        f"open({str(finished)!r}, 'w').close()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(signals, "HELD_IMPORTS", signals.HELD_IMPORTS | {"heldpkg"})
    signals.install()
    with pytest.raises(KeyboardInterrupt):
        import heldpkg  # noqa: F401
    assert finished.exists() and "heldpkg" not in sys.modules


def test_the_exit_code_is_the_commands_after_an_interrupt_inside_code_made_from_text(tmp_path):
    """A KeyboardInterrupt leaving code run from a string (dataclasses and namedtuple make
    such code in many imports) sets CPython's flag that kills the process by SIGINT at its
    exit when Python runs a module (``python -m reidkit``, as torchrun does): the command's
    130 became -2."""
    script = tmp_path / "interrupted.py"
    script.write_text(
        "from reidkit.cli import app\n"
        "def run(argv=None):\n"
        "    try:\n"
        "        exec('raise KeyboardInterrupt')  # where the signal landed\n"
        "    except KeyboardInterrupt:\n"
        "        return 130\n"
        "app.run = run\n"
        "app.main()\n"
    )
    argv = [sys.executable, "-m", "interrupted"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 130, done.stderr
