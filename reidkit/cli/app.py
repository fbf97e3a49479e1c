"""The ``reidkit`` command: the Typer app, its command groups and the one error boundary."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Annotated

import typer

from reidkit import __version__
from reidkit.cli import output, signals
from reidkit.cli.completion import COMPLETE_VAR
from reidkit.cli.options import QuietOpt, VerboseOpt
from reidkit.errors import Interrupted, ReidkitError
from reidkit.fileio import describe_os_error

PROG = "reidkit"

app = typer.Typer(
    name=PROG,
    help="Person re-identification: datasets, training, feature extraction, evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # help text is plain: paragraphs re-wrapped to the terminal, no markup ("[...]" in a
    # help string is shown, not taken for a style)
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Person re-identification: datasets, training, feature extraction, evaluation.

    Results go to stdout (with --json, one JSON document); logs, tables and progress go to
    stderr. Exit codes: 0 ok, 1 failure, 2 usage error, 75 output locked, 130 interrupted.
    """
    output.setup(quiet, verbose)


def _register_commands() -> None:
    from reidkit.cli import (
        completion,
        datasets,
        demo,
        evaluate,
        export,
        extract,
        models,
        train,
        visrank,
    )

    app.add_typer(datasets.app, name="datasets")
    app.add_typer(models.app, name="models")
    app.command("train")(train.train)
    app.command("resume")(train.resume)
    app.command("extract")(extract.extract)
    app.command("evaluate")(evaluate.evaluate)
    app.command("export")(export.export)
    app.command("visrank")(visrank.visrank)
    app.command("compare")(visrank.compare)
    app.command("demo")(demo.demo)
    app.command("completion")(completion.completion)


_register_commands()


def _print_error(message: str, hint: str | None = None) -> None:
    # one line, always: text from other libraries (torch, tarfile) can span several
    lines = message.strip().splitlines() or [""]
    sys.stderr.write(f"error: {lines[0]}{' ...' if len(lines) > 1 else ''}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    sys.stderr.flush()


def _without_flag_types(command):
    """Flags take no value: --help shows no ``<bool>`` type beside them."""
    for param in command.params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    help_option = command.get_help_option  # made anew for each --help

    def get_help_option(ctx):
        option = help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        _without_flag_types(sub)
    return command


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` and return the exit code; never raises."""
    debug = os.environ.get("REIDKIT_DEBUG", "") not in ("", "0")
    output.reset()
    signals.install()
    if COMPLETE_VAR in os.environ:  # the shell asks for completions
        from typer._completion_classes import completion_init

        completion_init()
    command = _without_flag_types(typer.main.get_command(app))
    try:
        result = command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        _print_error("interrupted")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        return _report(exc)
    code = result if isinstance(result, int) else 0
    if code == 0 and signals.unanswered():  # asked to stop, and went on: not a success
        code = Interrupted.exit_code
    if code == 130:
        _print_error("interrupted")
    return code


def _report(exc: Exception) -> int:
    """Print the error line for ``exc`` and return its exit code."""
    if isinstance(exc, ReidkitError) and exc.exit_code == Interrupted.exit_code:
        _print_error(exc.message, exc.hint)  # a graceful stop says what it saved
        return exc.exit_code
    if signals.was_interrupted(exc):
        _print_error("interrupted")
        return Interrupted.exit_code
    if isinstance(exc, ReidkitError):
        _print_error(exc.message, exc.hint)
        return exc.exit_code
    if isinstance(exc, typer.TyperException):
        ctx = getattr(exc, "ctx", None)
        if exc.format_message():  # empty when the help was shown for a bare group
            _print_error(exc.format_message(), f"see '{ctx.command_path if ctx else PROG} --help'")
        return exc.exit_code
    if isinstance(exc, OSError):  # the file system said no: not a bug, say which path
        error = describe_os_error(exc, exc.filename or "a file")
        _print_error(error.message, error.hint)
        return error.exit_code
    _print_error(
        f"unexpected {type(exc).__name__}: {exc}",
        "rerun with REIDKIT_DEBUG=1 for the traceback, and please report it",
    )
    return 1


def main() -> None:
    """Console-script entry point."""
    code = run()
    # The work is done: a signal during interpreter shutdown (torch's atexit hooks take a
    # while) must not print a traceback or turn a finished run into a killed one. Blocking
    # the signals in this thread is not enough: one sent to the process may reach another
    # thread (torch's, a loader's), and Python still runs the handler here. So they are
    # ignored from now on. One that lands before that raises once more; it is then redone.
    while True:
        try:
            for stop_signal in (signal.SIGINT, signal.SIGTERM):
                signal.signal(stop_signal, signal.SIG_IGN)
            break
        except KeyboardInterrupt:
            continue
    # The exit code is ours. A KeyboardInterrupt that left code run from a string (the
    # functions dataclasses and namedtuple make, in any import) set CPython's "unhandled
    # interrupt" flag, which would end the process by SIGINT (-2) after its error line and
    # exit 130. Running a string resets that flag.
    exec("")
    sys.exit(code)
