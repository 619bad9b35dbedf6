"""`tierkit inventory`: render the Ansible inventory and group vars of a stack for its hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tierkit import inventory as inv, stackfiles
from tierkit.commands.options import FileOpt, HostsOpt, StackOpt
from tierkit.console import console, print_json
from tierkit.pins import write_known_hosts

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
    spec = stackfiles.load(stack, file)
    directory = out or stackfiles.paths(stack, file).inventory_dir
    rendered = inv.render(spec, write_known_hosts(stackfiles.resolve_hosts(spec, hosts), directory / "known_hosts"))
    path = inv.write(rendered, directory)
    if as_json:
        print_json({"inventory": str(path), "hosts": rendered.hosts, "groups": rendered.groups,
                    "group_vars": rendered.group_vars})
    else:
        console.print(f"wrote {path} and {path.parent / 'group_vars'}/ for {', '.join(rendered.hosts)}",
                      markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("inventory")(inventory_command)
