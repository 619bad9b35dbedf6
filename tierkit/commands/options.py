"""Options several verbs share, each declared once with one help text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

STACK_HELP = "Stack name: reads <stackConfigDir>/Pulumi.NAME.yaml (stacks/: single-gpu, multi-gpu, failover, multi-server)."
FILE_HELP = "Any stack file, instead of --stack."
HOSTS_HELP = ("Hosts JSON (as `tierkit lab up --json` or `tierkit wait-ssh --json` writes), or - for standard "
              "input. Default: what the "
              "stack's provider knows (the running lab, or the hosts a baremetal spec lists).")

StackOpt = Annotated[Optional[str], typer.Option("--stack", help=STACK_HELP)]
RequiredStackOpt = Annotated[str, typer.Option("--stack", help=STACK_HELP)]
FileOpt = Annotated[Optional[Path], typer.Option("--file", help=FILE_HELP)]
HostsOpt = Annotated[Optional[Path], typer.Option("--hosts", help=HOSTS_HELP)]
