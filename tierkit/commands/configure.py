"""`tierkit configure`: run site.yml (or one stage) on a stack's hosts through ansible-runner."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from tierkit import ansible, inventory as inv
from tierkit.commands.inventory import FileOpt, HostsOpt, StackOpt, output_dir, resolve_hosts
from tierkit.commands.validate import load
from tierkit.console import console, err_console, print_json
from tierkit.hosts import Host
from tierkit.pins import write_known_hosts
from tierkit.spec import TierSpec


def serve_lab_repo(stack: ExitStack, spec: TierSpec, hosts: list[Host]) -> None:
    """Lab hosts install from the stand-in apt repository: serve it for the run."""
    if not inv.is_lab(spec):
        return
    from tierkit.lab import standin_repo

    address = inv.lab_client_address(hosts)
    root = standin_repo.ensure_repo(standin_repo.repo_url(address))
    stack.enter_context(standin_repo.serve(root, ansible.run_netns(hosts) or "", address))


def configure(spec: TierSpec, hosts: list[Host], inventory_dir: Path, playbook: str,
              *, quiet: bool = False) -> ansible.RunResult:
    """Render the inventory, then run the playbook on the hosts (serving the lab's repo if needed).
    Hosts that carry their pinned key are verified against a known_hosts rebuilt from it."""
    hosts = write_known_hosts(hosts, inventory_dir / "known_hosts")
    path = inv.write(inv.render(spec, hosts), inventory_dir)
    show = err_console.print if quiet else console.print
    log = inventory_dir.parent / "logs" / f"{Path(playbook).stem}.log"
    with ExitStack() as stack:
        serve_lab_repo(stack, spec, hosts)
        return ansible.run_playbook(playbook, path, hosts, extravars=inv.secret_vars(), show=show, log_file=log)


def configure_command(
    stack: StackOpt = None,
    file: FileOpt = None,
    hosts: HostsOpt = None,
    playbook: Annotated[str, typer.Option("--playbook", help="site (all stages), or one stage: drivers, nccl, topology, vllm, failover; or a playbook path.")] = "site",
    as_json: Annotated[bool, typer.Option("--json", help="Print the recap and failures as JSON (progress goes to stderr).")] = False,
) -> None:
    """Configure the stack's hosts: NVIDIA driver, NCCL gate, topology gate, vLLM (and failover).

    Streams each host's task results, then prints the recap per host and one line per failure (host, task, message). Exits 1 when any host failed.

    The vLLM API key and a Hugging Face token are read from TIERKIT_API_KEY and HF_TOKEN and passed as extra vars, never written to the inventory. Lab stacks install from the stand-in NVIDIA apt repository, which this command serves for the run.
    """
    spec = load(stack, file)
    result = configure(spec, resolve_hosts(spec, hosts), output_dir(stack, file), playbook, quiet=as_json)
    if as_json:
        print_json({"ok": result.ok, **result.model_dump()})
    else:
        ansible.print_summary(result)
    if not result.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("configure")(configure_command)
