"""`tierkit configure`: run site.yml (or one stage) on a stack's hosts through ansible-runner."""

from __future__ import annotations

from typing import Annotated

import typer

from tierkit import ansible, stackfiles
from tierkit.commands.options import FileOpt, HostsOpt, StackOpt
from tierkit.configure import configure
from tierkit.console import print_json


def configure_command(
    stack: StackOpt = None,
    file: FileOpt = None,
    hosts: HostsOpt = None,
    playbook: Annotated[str, typer.Option("--playbook", help="site (all stages), or one stage: preflight, drivers, nccl, topology, vllm, failover; or a playbook path.")] = "site",
    as_json: Annotated[bool, typer.Option("--json", help="Print the recap and failures as JSON (progress goes to stderr).")] = False,
) -> None:
    """Configure the stack's hosts: NVIDIA driver, NCCL gate, topology gate, vLLM (and failover).

    Streams each host's task results, then prints the recap per host and one line per failure (host, task, message). Exits 1 when any host failed.

    The vLLM API key and a Hugging Face token are read from TIERKIT_API_KEY and HF_TOKEN and passed as extra vars, never written to the inventory. The inventory and the run's log go under .tierkit/STACK/. Lab stacks install from the stand-in NVIDIA apt repository, which this command serves for the run.
    """
    spec = stackfiles.load(stack, file)
    result = configure(spec, stackfiles.resolve_hosts(spec, hosts), stackfiles.paths(stack, file), playbook,
                       quiet=as_json)
    if as_json:
        print_json({"ok": result.ok, **result.model_dump()})
    else:
        ansible.print_summary(result)
    if not result.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("configure")(configure_command)
