"""The `tierkit` command: mounts each verb module and turns TierkitError into `error:` lines."""

from __future__ import annotations

import functools
import sys
from typing import Annotated

import typer
import typer.main
from typer._click.core import Command
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from tierkit import __version__
from tierkit.console import console, print_errors
from tierkit.errors import TierkitError

app = typer.Typer(
    name="tierkit",
    help=(
        "Stand up LLM inference on GPU servers in four tiers (single-gpu, multi-gpu, failover, multi-server).\n\n"
        "Start with `tierkit plan` to size a deployment, `tierkit validate --stack NAME` to check a "
        "stack file, and `tierkit up --stack NAME` to deploy it."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"tierkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print tierkit's version and exit.", is_eager=True, callback=_print_version)
    ] = False,
) -> None:
    """Stand up LLM inference on GPU servers in four tiers."""


def _mount() -> None:
    """Register every verb. Each module exposes `register(app)`."""
    import importlib

    for name in VERBS:
        importlib.import_module(f"tierkit.commands.{name}").register(app)


# One module per verb (or verb group) under tierkit/commands/, each with `register(app)`.
VERBS: tuple[str, ...] = (
    "plan",
    "validate",
    "support",
    "assets",
    "topology",
    "smoke",
    "inventory",
    "configure",
    "wait_ssh",
    "calibrate",
    "up",
    "preview",
    "lab",
    "collection",
    "status",
)


_mount()


@functools.cache
def command() -> Command:
    """The click command typer builds from `app` (built once: it inspects every verb's signature)."""
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line each and exit 2, never a traceback.

    `argv`: the arguments after the program name (default: sys.argv[1:])."""
    try:
        result = command().main(args=argv, prog_name="tierkit", standalone_mode=False)
    except TierkitError as exc:
        print_errors(exc.problems)
        sys.exit(exc.exit_code)
    except NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(0)
    except UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx else ""
        print_errors([where + exc.format_message().replace("\n", " ")])
        sys.exit(2)
    except ClickException as exc:
        print_errors([exc.format_message()])
        sys.exit(exc.exit_code)
    except typer.Abort:
        print_errors(["aborted"])
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
