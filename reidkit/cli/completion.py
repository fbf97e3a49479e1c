"""``reidkit completion SHELL``: print the shell completion script."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


COMPLETE_VAR = "_REIDKIT_COMPLETE"


def completion_script(shell: str, prog: str = "reidkit") -> str:
    """The completion script for ``shell``; it asks ``prog`` for completions at run time."""
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name=prog, complete_var=COMPLETE_VAR, shell=shell) + "\n"


def completion(
    shell: Annotated[Shell, typer.Argument(help="The shell to complete in.")],
) -> None:
    """Print the shell completion script for SHELL.

    bash: reidkit completion bash > ~/.local/share/bash-completion/completions/reidkit
    zsh:  reidkit completion zsh > "${fpath[1]}/_reidkit"
    fish: reidkit completion fish > ~/.config/fish/completions/reidkit.fish
    """
    typer.echo(completion_script(shell.value), nl=False)
