"""The command-line interface: parse, call one library function, render."""

from __future__ import annotations


def main() -> None:
    """Entry point of the ``reidkit`` command."""
    import sys

    from reidkit.cli import signals

    signals.install()  # before the imports below: a signal during start-up is an interrupt
    try:
        from reidkit.cli.app import main as app_main
    except (KeyboardInterrupt, Exception) as exc:
        if not signals.was_interrupted(exc):
            raise
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    app_main()
