"""`tierkit support`: the support matrix (OS, Python, driver packages, CUDA, vLLM)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tierkit import support
from tierkit.console import print_json


def support_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole matrix as JSON.")] = False,
) -> None:
    """Print which OS, driver branch, CUDA, Python and vLLM tierkit supports together.

    Prints the README's tables (Markdown) unless --json. The data is the support role's (roles/support/vars/), which the roles read too.
    """
    matrix = support.load()
    if as_json:
        print_json(matrix)
    else:
        sys.stdout.write(support.markdown(matrix))


def register(app: typer.Typer) -> None:
    app.command("support")(support_command)
