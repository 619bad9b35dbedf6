"""`tierkit collection build`: the roles and playbooks as the Ansible collection tierkit.gpu."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tierkit.console import console


def build_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory the tarball is written to (must exist).")] = Path("."),
) -> None:
    """Build tierkit-gpu-VERSION.tar.gz from this project's roles/ and playbooks/.

    Install it with `ansible-galaxy collection install FILE` and use the roles as tierkit.gpu.nvidia_driver, tierkit.gpu.nccl, tierkit.gpu.gpu_topology, tierkit.gpu.vllm, tierkit.gpu.failover, or the whole flow as `ansible-playbook -i INVENTORY tierkit.gpu.site`. examples/baremetal/ holds an inventory with every required variable.
    """
    from tierkit.collection import build
    from tierkit.spec import project_root

    tarball = build(project_root(), output.resolve())
    console.print(f"built {tarball}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The roles as an Ansible collection (tierkit.gpu) for your own playbooks.",
                        no_args_is_help=True)
    group.command("build")(build_command)
    app.add_typer(group, name="collection")
