"""`tierkit calibrate`: the lab's smoke floor, from a short probe of a CPU endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tierkit.commands.validate import load
from tierkit.console import console, err_console, print_json
from tierkit.lab.calibration import calibrate
from tierkit.smoke.endpoint import load_api_key


def calibrate_command(
    endpoint: Annotated[str, typer.Option("--endpoint", help="The server's base URL, e.g. http://10.77.40.11:8000.")],
    stack: Annotated[Optional[str], typer.Option("--stack", help="Stack name: its spec gives the model and the smoke lengths.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", help="Any stack file (instead of --stack).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the calibration as JSON on stdout (the statement also goes to stderr).")] = False,
) -> None:
    """Measure a CPU-served endpoint's single-stream rate and derive the lab's smoke floor.

    The plan's figures assume GPUs; a lab deploy serves the tiny model on the CPU. This sends
    requests one at a time with the spec's smoke lengths and sets the floor by the plan's own rule
    (the smoke fraction x single-stream tok/s x replicas) with the measured rate in place of the
    estimate. The API key comes from $OPENAI_API_KEY. Exits 1 when the probe fails.
    """
    spec = load(stack, file)
    result = calibrate(endpoint, spec, load_api_key(None))
    if as_json:
        err_console.print(result.statement, markup=False, soft_wrap=True)
        print_json(result.model_dump())
    else:
        console.print(result.statement, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
