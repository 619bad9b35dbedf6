"""`tierkit lab ...`: simulated GPU servers on this machine, reached through the lab provider."""

from __future__ import annotations

import os
import time
from typing import Annotated, Optional

import typer
from rich import box
from rich.table import Table

from tierkit import netns
from tierkit.console import console, err_console, print_json
from tierkit.errors import TierkitError
from tierkit.providers.lab import FAULT_HELP, Lab, ensure_image, image_path, image_ready, ssh_argv

lab_app = typer.Typer(
    help=(
        "Simulated GPU servers on this machine: systemd-nspawn hosts with real systemd, sshd and "
        "their own addresses on a private switch, and a simulated nvidia-smi. Needs root.\n\n"
        "Lab hosts are reachable only inside the lab's switch network namespace: run clients "
        "with `tierkit lab exec NAME -- CMD`, or log in with `tierkit lab ssh HOST`."
    ),
    no_args_is_help=True,
)
image_app = typer.Typer(help="The lab's host image (Debian bookworm), cached by recipe.",
                        no_args_is_help=True)
lab_app.add_typer(image_app, name="image")

JSON_HELP = "Print JSON instead of a table."


@lab_app.command("up")
def up(
    name: Annotated[str, typer.Option("--name", help="Lab name: hosts are NAME-1, NAME-2, ...")],
    hosts: Annotated[int, typer.Option("--hosts", help="How many servers.")],
    gpu: Annotated[str, typer.Option("--gpu", help="Catalog GPU each server simulates, e.g. "
                                     "h100-sxm, a100-80g-pcie, l40s, rtx-pro-6000.")],
    gpus_per_host: Annotated[int, typer.Option("--gpus-per-host", help="GPUs per server (1-8).")],
    topology: Annotated[str, typer.Option(
        "--topology", help="nvlink: the GPU's own (every pair NV# on NVSwitch boards, bridged "
        "pairs on bridge cards, PCIe when it has no NVLink); pairs: bridged pairs; pcie: no "
        "NVLink (NODE/SYS by NUMA); or a file with a captured `nvidia-smi topo -m`.")] = "nvlink",
    fault: Annotated[Optional[list[str]], typer.Option(
        "--fault", help=f"Inject a GPU fault (repeatable): {FAULT_HELP}.")] = None,
    subnet: Annotated[Optional[str], typer.Option(
        "--subnet", help="The lab's /24, e.g. 10.77.40.0/24 (a failover stack puts its virtual IP "
        "in it). Default: the next free /24 of 10.211.0.0/16.")] = None,
    runtime: Annotated[bool, typer.Option(
        "--runtime", help="Build the vLLM wheelhouse and the tiny model first if missing "
        "(minutes when cold); without it, whichever is built is mounted.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the lab and its hosts as JSON "
                                           "(what `--hosts FILE` options read).")] = False,
) -> None:
    """Create a lab of N servers, or report it if it exists with these settings.

    Each server boots real systemd in a systemd-nspawn container with its own overlay root,
    network namespace, address (.11, .12, ... of the lab's /24) and sshd; its host key is
    made before boot and pinned in the lab's known_hosts. Warm: a few seconds.
    """
    started = time.monotonic()
    lab = Lab.up(name, hosts, gpu, gpus_per_host, topology, fault or [], runtime=runtime,
                 subnet=subnet)
    if json_out:
        print_json(lab.to_json())
        return
    table = Table(title=f"lab {lab.name}: {lab.subnet}, switch namespace {lab.netns}",
                  box=box.SIMPLE_HEAD)
    for column in ("host", "address", "port", "user"):
        table.add_column(column)
    for h in lab.hosts:
        table.add_row(h.name, h.address, str(h.port), h.user)
    console.print(table)
    console.print(f"key: {lab.key_path}\nknown_hosts: {lab.known_hosts}\n"
                  f"hosts file: {lab.hosts_file}\nready in {time.monotonic() - started:.1f} s; "
                  f"log in with `tierkit lab ssh {lab.hosts[0].name}`, run clients with "
                  f"`tierkit lab exec {lab.name} -- CMD`", soft_wrap=True)


@lab_app.command("status")
def status(
    name: Annotated[Optional[str], typer.Argument(help="One lab (default: every lab).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Show each lab's hosts: running or stopped, link up or cut, SSH answering, memory."""
    labs = [Lab.get(name)] if name else Lab.all()
    rows = [(lab, lab.status()) for lab in labs]
    if json_out:
        objects = [{"lab": lab.name, "netns": lab.netns, "subnet": str(lab.subnet),
                    "hosts": [s.model_dump() for s in states]} for lab, states in rows]
        print_json(objects[0] if name else {"labs": objects})
        return
    if not rows:
        console.print("no labs on this machine; make one with `tierkit lab up`")
    for lab, states in rows:
        table = Table(title=f"lab {lab.name}: {lab.subnet} ({lab.record.gpus_per_host}x "
                      f"{lab.record.gpu}, {lab.record.topology})", box=box.SIMPLE_HEAD)
        for column in ("host", "address", "state", "link", "ssh", "memory"):
            table.add_column(column)
        for s in states:
            table.add_row(s.name, s.address, s.state, f"{s.link} ({s.throttle})" if s.throttle else s.link,
                          "-" if s.ssh is None else ("ok" if s.ssh else "no answer"),
                          "-" if s.memory_mib is None else f"{s.memory_mib:.0f} MiB")
        console.print(table)


@lab_app.command("ssh")
def ssh(
    host: Annotated[str, typer.Argument(help="Host name, e.g. demo-1.")],
    command: Annotated[Optional[list[str]], typer.Argument(
        help="Command to run (after --); a login shell without one.")] = None,
) -> None:
    """Log in to a lab host (or run a command there) over SSH, its host key verified."""
    _, target = Lab.of_host(host)
    argv = ssh_argv(target, command or [], batch=False)
    os.execvp(argv[0], argv)


@lab_app.command("exec")
def exec_(
    name: Annotated[str, typer.Argument(help="Lab name.")],
    command: Annotated[list[str], typer.Argument(help="Command to run (after --).")],
) -> None:
    """Run a command where the lab's addresses are reachable (its switch namespace).

    e.g. `tierkit lab exec demo -- ansible-playbook -i hosts.yml site.yml`
    """
    lab = Lab.get(name)
    argv = netns.wrap(command, lab.netns)
    os.execvp(argv[0], argv)


@lab_app.command("down")
def down(
    name: Annotated[str, typer.Argument(help="Lab name.")],
    json_out: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Remove a lab: processes, mounts, namespaces, cgroups, nspawn leftovers and its files.

    Idempotent, and works after a crash or a killed host.
    """
    started = time.monotonic()
    found = Lab.down(name)
    seconds = round(time.monotonic() - started, 2)
    if json_out:
        print_json({"lab": name, "removed": found, "seconds": seconds})
    elif found:
        console.print(f"lab {name} removed in {seconds:.1f} s")
    else:
        console.print(f"no lab {name}; nothing to do")


@lab_app.command("fault")
def fault(
    host: Annotated[str, typer.Argument(help="Host name, e.g. demo-2.")],
    stop: Annotated[bool, typer.Option("--stop", help="Shut the host down cleanly.")] = False,
    kill: Annotated[bool, typer.Option("--kill", help="Kill every process of the host at once "
                                       "(a power cut).")] = False,
    reboot: Annotated[bool, typer.Option("--reboot", help="Reboot it cleanly from inside (`systemctl "
                                         "reboot`); waits until it answers SSH again.")] = False,
    cut_link: Annotated[bool, typer.Option("--cut-link", help="Unplug its network cable.")] = False,
    throttle: Annotated[Optional[str], typer.Option(
        "--throttle", metavar="RATE", help="Limit its cable to RATE both ways (tc token bucket), "
        "e.g. 100mbit, 1gbit.")] = None,
    restore: Annotated[bool, typer.Option("--restore", help="Plug the cable back in at full speed "
                                          "and boot the host if it is down; waits for SSH.")] = False,
) -> None:
    """Inject a server fault into a lab host, or restore it (failover and multi-server tests)."""
    chosen = [action for action, on in (("stop", stop), ("kill", kill), ("reboot", reboot), ("cut-link", cut_link),
                                        ("throttle", throttle is not None), ("restore", restore)) if on]
    if len(chosen) != 1:
        raise TierkitError("fault: choose exactly one of --stop, --kill, --reboot, --cut-link, --throttle RATE, --restore")
    lab, target = Lab.of_host(host)
    lab.fault(target.name, chosen[0], throttle)  # type: ignore[arg-type]
    done = f"link throttled to {throttle}" if throttle else f"{chosen[0]} done"
    err_console.print(f"{target.name}: {done}")


@image_app.command("build")
def image_build(json_out: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
    """Build the host image (mmdebstrap, about a minute) unless this recipe's is cached."""
    cached = image_ready()
    started = time.monotonic()
    if not cached and not json_out:
        err_console.print("building the lab image with mmdebstrap ...")
    root = ensure_image()
    result = {"path": str(root), "cache": str(image_path()), "cached": cached,
              "seconds": round(time.monotonic() - started, 1)}
    if json_out:
        print_json(result)
    else:
        console.print(f"lab image {'cached' if cached else 'built'}: {root} "
                      f"({result['seconds']} s)", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
