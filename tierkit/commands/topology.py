"""`tierkit topology parse FILE`: read nvidia-smi's topology output the way the gate does."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from tierkit.console import console, print_json
from tierkit.errors import TierkitError
from tierkit.safe_yaml import MAX_BYTES, excerpt, read_bytes
from tierkit.topology import (
    CpuRanges,
    NvlinkStatus,
    TopologyParseError,
    TopoMatrix,
    parse,
)

topology_app = typer.Typer(
    help="Read GPU topology: `nvidia-smi topo -m` and `nvidia-smi nvlink -s` output.",
    no_args_is_help=True,
)


def _read(file: str) -> str:
    if file == "-":
        text = sys.stdin.read(MAX_BYTES + 1)
        if len(text) > MAX_BYTES:
            raise TierkitError(f"FILE: standard input holds over {MAX_BYTES // 1024} KiB; give nvidia-smi output")
        return text
    try:
        return read_bytes(Path(file), kind="file holding nvidia-smi output").decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise TierkitError(f"FILE: cannot read {excerpt(file)}: no such file; give a file holding "
                           f"nvidia-smi output, or - for stdin") from None
    except TierkitError as exc:
        raise TierkitError(*(f"FILE: {p}" for p in exc.problems)) from None


def _cpus(ranges: CpuRanges | None) -> str:
    if ranges is None:
        return "N/A"
    return ",".join(f"{low}" if low == high else f"{low}-{high}" for low, high in ranges)


def _topo_table(topo: TopoMatrix) -> Table:
    table = Table(title=f"nvidia-smi topo -m: {topo.gpu_count} GPU(s), {len(topo.nics)} NIC(s)",
                  box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("")
    for device in topo.devices:
        table.add_column(device, justify="center", no_wrap=True)
    for r, device in enumerate(topo.devices):
        cells = [f"[bold green]{c}[/]" if c.startswith("NV") else c for c in topo.cells[r]]
        table.add_row(device, *cells)
    return table


def _affinity_table(topo: TopoMatrix) -> Table:
    table = Table(title="affinity", box=box.SIMPLE_HEAD, padding=(0, 1))
    for column in ("GPU", "CPU affinity", "NUMA affinity", "GPU NUMA ID"):
        table.add_column(column)
    for gpu in topo.gpus:
        numa = "N/A" if gpu.numa_affinity is None else ",".join(map(str, gpu.numa_affinity))
        table.add_row(f"GPU{gpu.index}", _cpus(gpu.cpu_affinity), numa,
                      "N/A" if gpu.gpu_numa_id is None else str(gpu.gpu_numa_id))
    return table


def _nvlink_table(status: NvlinkStatus) -> Table:
    table = Table(title="nvidia-smi nvlink -s")
    for column in ("GPU", "name", "active links", "GB/s per link", "inactive links"):
        table.add_column(column)
    for gpu in status.gpus:
        speeds = sorted({link.gbps for link in gpu.links if link.gbps is not None})
        active = sum(1 for link in gpu.links if link.active)
        inactive = "all" if gpu.all_inactive else ", ".join(map(str, gpu.inactive))
        table.add_row(f"GPU{gpu.index}", gpu.name, f"{active}/{len(gpu.links)}",
                      ", ".join(f"{s:g}" for s in speeds) or "-",
                      f"[bold red]{inactive}[/]" if inactive else "none")
    return table


def _show(reading: TopoMatrix | NvlinkStatus) -> None:
    if isinstance(reading, NvlinkStatus):
        console.print(_nvlink_table(reading))
        return
    console.print(_topo_table(reading))
    console.print(_affinity_table(reading))
    if reading.nics:
        console.print("NICs: " + ", ".join(f"{n.label} = {n.name or 'unnamed'}" for n in reading.nics), markup=False)
    pairs = ", ".join(f"GPU{i}-GPU{j} NV{links}" for i, j, links in reading.nvlink)
    console.print(f"NVLink pairs: {pairs or 'none (PCIe only)'}")


@topology_app.command("parse")
def parse_command(
    file: Annotated[str, typer.Argument(metavar="FILE", help="File holding `nvidia-smi topo -m` or `nvidia-smi nvlink -s` output; - reads stdin.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the reading as JSON. topo -m: kind=topo, gpu_count, nvlink (a list of \\[i, j, links] with i < j, sorted), devices, matrix, gpus (affinity), nics. nvlink -s: kind=nvlink, gpus (index, name, uuid, links of link/gbps/active, all_inactive), inactive (a list of \\[gpu, link]).")] = False,
) -> None:
    """Parse FILE, telling the two formats apart, and show the reading.

    This is the parser the gpu_topology role's Ansible module runs on each host. Output it cannot read exits 2 with the line it stopped at; it never guesses.

    Example: nvidia-smi topo -m | tierkit topology parse - --json
    """
    try:
        reading = parse(_read(file))
    except TopologyParseError as exc:
        raise TierkitError(f"FILE: {file}: {exc}; expected the output of `nvidia-smi topo -m` or `nvidia-smi nvlink -s`") from None
    if as_json:
        print_json(reading.to_json())
    else:
        _show(reading)


def register(app: typer.Typer) -> None:
    app.add_typer(topology_app, name="topology")
