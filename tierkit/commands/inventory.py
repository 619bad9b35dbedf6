"""`tierkit inventory`: render the Ansible inventory and group vars of a stack for its hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tierkit import inventory as inv
from tierkit.commands.validate import load
from tierkit.console import console, print_json
from tierkit.errors import TierkitError
from tierkit.hosts import Host, read_hosts
from tierkit.pins import write_known_hosts
from tierkit.spec import TierSpec

StackOpt = Annotated[Optional[str], typer.Option("--stack", help="Stack name: reads stacks/Pulumi.NAME.yaml.")]
FileOpt = Annotated[Optional[Path], typer.Option("--file", help="Any stack file (instead of --stack).")]
HostsOpt = Annotated[
    Optional[Path],
    typer.Option("--hosts", help="Hosts JSON (as `tierkit lab up --json` or `tierkit wait-ssh --json` writes), or - "
                                 "for standard input. Default: the running lab of a "
                                 "lab stack, or the hosts a baremetal spec lists."),
]


def resolve_hosts(spec: TierSpec, hosts_file: Path | None) -> list[Host]:
    """The stack's hosts: --hosts (a file, or - for standard input), else the spec's bare-metal
    list, else the running lab's."""
    if hosts_file is not None:
        return read_hosts(hosts_file)
    provider = spec.provider
    if provider.kind == "baremetal":
        return [Host(name=h.name, address=h.address, port=h.port, user=h.user, key_path=h.key_path)
                for h in provider.hosts]
    if provider.kind == "lab":
        from tierkit.lab import Lab

        return Lab.get(provider.name).hosts
    raise TierkitError(f"--hosts: {provider.kind} hosts come from the stack's outputs; pass --hosts FILE")


def output_dir(stack: str | None, file: Path | None) -> Path:
    """Default place for a stack's rendered inventory: .tierkit/<stack>/inventory."""
    name = stack or (file.stem.removeprefix("Pulumi.") if file else "stack")
    return Path(".tierkit") / name / "inventory"


def inventory_command(
    stack: StackOpt = None,
    file: FileOpt = None,
    hosts: HostsOpt = None,
    out: Annotated[Optional[Path], typer.Option("--output", "-o", help="Directory to write (default .tierkit/STACK/inventory).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the inventory and group vars as JSON.")] = False,
) -> None:
    """Render hosts.yml and group_vars/gpu_servers.yml for the stack's hosts.

    The files are what the playbooks read: `ansible-playbook -i DIR/hosts.yml playbooks/site.yml`. Host keys are pinned through each host's known_hosts file.

    Secrets are never written: pass the API key as an extra var (-e vllm_api_key=...), as `tierkit configure` does from TIERKIT_API_KEY.
    """
    spec = load(stack, file)
    directory = out or output_dir(stack, file)
    rendered = inv.render(spec, write_known_hosts(resolve_hosts(spec, hosts), directory / "known_hosts"))
    path = inv.write(rendered, directory)
    if as_json:
        print_json({"inventory": str(path), "hosts": rendered.hosts, "groups": rendered.groups,
                    "group_vars": rendered.group_vars})
    else:
        console.print(f"wrote {path} and {path.parent / 'group_vars'}/ for {', '.join(rendered.hosts)}",
                      markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("inventory")(inventory_command)
