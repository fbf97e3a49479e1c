"""The command-line interface: parse, call one library function, render."""

from __future__ import annotations


def main() -> None:
    """Entry point of the ``reidkit`` command."""
    from reidkit.cli.app import main as app_main

    app_main()
