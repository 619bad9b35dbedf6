"""`tierkit calibrate`: the lab's smoke floor, from a short probe of a CPU endpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from tierkit import stackfiles
from tierkit.commands.options import FileOpt, StackOpt
from tierkit.console import console, err_console, print_json
from tierkit.localvllm.calibration import calibrate
from tierkit.smoke.endpoint import load_api_key


def calibrate_command(
    endpoint: Annotated[str, typer.Option("--endpoint", help="The server's base URL, e.g. http://10.77.40.11:8000.")],
    stack: StackOpt = None,
    file: FileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the calibration as JSON on stdout (the statement also goes to stderr).")] = False,
) -> None:
    """Measure a CPU-served endpoint's single-stream rate and derive the lab's smoke floor.

    The plan's figures assume GPUs; a lab deploy serves the tiny model on the CPU. This sends
    requests one at a time with the spec's model and smoke lengths and sets the floor by the plan's own rule
    (the smoke fraction x single-stream tok/s x replicas) with the measured rate in place of the
    estimate. The API key comes from $OPENAI_API_KEY. Exits 1 when the probe fails.
    """
    spec = stackfiles.load(stack, file)
    result = calibrate(endpoint, spec, load_api_key(None))
    if as_json:
        err_console.print(result.statement, markup=False, soft_wrap=True)
        print_json(result.model_dump())
    else:
        console.print(result.statement, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
