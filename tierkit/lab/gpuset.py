"""The simulated GPU set of a lab host: what its `nvidia-smi` and `all_reduce_perf` report.

`gpu_set(...)` turns a catalog GPU, a count, a topology and faults into the JSON the lab writes
to /etc/tierkit-lab.json in each host (the simulators in tierkit/lab/sim/ only render it). The
topology is generated from the catalog (`nvlink`: the GPU's own NVLink, every pair NV# on
NVSwitch boards, bridged pairs on bridge cards, none on PCIe-only cards; `pairs`: bridged pairs;
`pcie`: no NVLink) with NODE/SYS by NUMA node, or replayed from a captured `topo -m` file.

Faults (`--fault`), each optionally for one host (`HOST/`):
  inactive-link=GPU[:LINK]   that NVLink (all of the GPU's links without :LINK) is <inactive>
  missing-gpu=GPU            the GPU is gone from the bus (the others are renumbered)
  wrong-model=GPU_KEY        the host has that catalog GPU instead
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tierkit.catalog import Gpu, lookup_gpu
from tierkit.errors import TierkitError
from tierkit.lab.sim import SIM_CUDA_VERSION, SIM_DRIVER_VERSION
from tierkit.safe_yaml import excerpt, read_text
from tierkit.topology import TopologyParseError, parse_topo

TOPOLOGY_KINDS = ("nvlink", "pcie", "pairs")
TOPOLOGY_MAX_BYTES = 64 * 1024  # `topo -m` of 8 GPUs and 8 NICs is about 3 KiB
MAX_GPUS = 8

# The simulated board: two sockets (CPU lists as `topo -m` prints them), and PCI bus numbers as
# on an HGX H100 board, the first four behind socket 0.
NUMA_CPUS = ("0-47,96-143", "48-95,144-191")
PCI_BUSES = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")

FABRIC_MANAGER_UNIT = "nvidia-fabricmanager.service"

# NCCL model (simulation choices, docs/topology.md#the-labs-simulation-choices): a PCIe hop carries
# the PCIe-only box figure (28-35 GB/s), 0.7 of it across sockets (SYS); every size pays a
# fixed latency.
PCIE_BUSBW_GBS = 28.0
SYS_FACTOR = 0.7
LATENCY_US = 30.0

FAULT_HELP = ("inactive-link=GPU[:LINK], missing-gpu=GPU or wrong-model=GPU_KEY, "
              "optionally for one host as HOST/FAULT")
_FAULT = re.compile(r"(?:(?P<host>[a-z0-9-]+)/)?(?P<kind>inactive-link|missing-gpu|wrong-model)"
                    r"=(?P<arg>[a-z0-9.:-]+)")


class GpuFault(BaseModel):
    """One injected GPU fault, on every host of the lab or on `host` alone."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["inactive-link", "missing-gpu", "wrong-model"]
    host: str | None = None
    gpu: int | None = None
    link: int | None = None
    model: str | None = None

    def __str__(self) -> str:
        if self.kind == "wrong-model":
            arg = str(self.model)
        else:
            arg = f"{self.gpu}" if self.link is None else f"{self.gpu}:{self.link}"
        return f"{self.host}/{self.kind}={arg}" if self.host else f"{self.kind}={arg}"


def parse_fault(text: str) -> GpuFault:
    """Read one `--fault` value, or fail with one line naming the forms."""
    match = _FAULT.fullmatch(text.strip())
    bad = TierkitError(f"--fault: {excerpt(text)} is not a GPU fault; use {FAULT_HELP}")
    if not match:
        raise bad
    kind, arg, host = match["kind"], match["arg"], match["host"]
    if kind == "wrong-model":
        lookup_gpu(arg, field="--fault wrong-model")
        return GpuFault(kind=kind, host=host, model=arg)
    gpu, _, link = arg.partition(":")
    if not gpu.isdigit() or (link and (kind != "inactive-link" or not link.isdigit())):
        raise bad
    return GpuFault(kind=kind, host=host, gpu=int(gpu), link=int(link) if link else None)


@dataclass(frozen=True)
class Layout:
    """A box's topology: `topo -m` devices and matrix, and each GPU's NUMA node and CPUs."""

    devices: list[str]
    matrix: list[list[str]]
    numa: list[str]
    cpus: list[str]
    nics: list[dict[str, str | None]]


def check_topology(value: str) -> str | None:
    """The text of a topology file, None for a generated kind; a one-line error otherwise."""
    if value in TOPOLOGY_KINDS:
        return None
    path = Path(value)
    if not path.is_file():
        raise TierkitError(f"--topology: {excerpt(value)} is neither one of {', '.join(TOPOLOGY_KINDS)} "
                           f"nor a file; pass a kind or a captured `nvidia-smi topo -m` file")
    try:
        return read_text(path, limit=TOPOLOGY_MAX_BYTES, kind="captured `nvidia-smi topo -m` file")
    except TierkitError as exc:
        raise TierkitError(*(f"--topology: {p}" for p in exc.problems)) from None


def generate(gpu: Gpu, count: int, kind: str) -> Layout:
    """A catalog box: NV# where NVLink joins two GPUs, else NODE within a socket, SYS across."""
    if kind == "pairs" and gpu.nvlink == "none":
        raise TierkitError(f"--topology: pairs needs NVLink bridges, and {gpu.key} has no NVLink; "
                           f"use --topology pcie")
    everywhere = kind == "nvlink" and gpu.nvlink == "switch"
    paired = kind == "pairs" or (kind == "nvlink" and gpu.nvlink == "bridge")
    sockets = 1 if count <= 2 else 2
    numa = [i * sockets // count for i in range(count)]

    def code(i: int, j: int) -> str:
        if i == j:
            return "X"
        if everywhere or (paired and i // 2 == j // 2):
            return f"NV{gpu.nvlink_links}"
        return "NODE" if numa[i] == numa[j] else "SYS"

    return Layout(
        devices=[f"GPU{i}" for i in range(count)],
        matrix=[[code(i, j) for j in range(count)] for i in range(count)],
        numa=[str(node) for node in numa],
        cpus=[NUMA_CPUS[node] for node in numa],
        nics=[],
    )


def replay(text: str, count: int) -> Layout:
    """A captured `topo -m`, which must show `count` GPUs."""
    lines = [line for line in text.splitlines() if not line.startswith("# source:")]
    try:
        topo = parse_topo("\n".join(lines))
    except TopologyParseError as exc:
        raise TierkitError(f"--topology: cannot read the file ({exc}); pass a captured "
                           f"`nvidia-smi topo -m`") from None
    if topo.gpu_count != count:
        raise TierkitError(f"--topology: the file shows {topo.gpu_count} GPUs, --gpus-per-host is "
                           f"{count}; make them agree")

    def cpus(ranges: Any) -> str:
        if ranges is None:
            return "N/A"
        return ",".join(f"{low}" if low == high else f"{low}-{high}" for low, high in ranges)

    return Layout(
        devices=list(topo.devices),
        matrix=[list(row) for row in topo.cells],
        numa=[",".join(map(str, g.numa_affinity)) if g.numa_affinity else "N/A"
              for g in topo.gpus],
        cpus=[cpus(g.cpu_affinity) for g in topo.gpus],
        nics=[nic.to_json() for nic in topo.nics],
    )


def _digest(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def _uuid(seed: str) -> str:
    h = _digest("uuid", seed)
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _links(gpu: Gpu, layout: Layout, i: int) -> list[float | None]:
    """Per-NVLink speeds of GPU i: NVSwitch GPUs have NV# links to the switches, bridged GPUs
    the sum over their partners."""
    bonds = [int(code[2:]) for code in layout.matrix[i] if code.startswith("NV")]
    if not bonds or gpu.nvlink == "none":
        return []
    count = max(bonds) if gpu.nvlink == "switch" else sum(bonds)
    return [gpu.nvlink_link_gbs] * count


def healthy_gpus(gpu: Gpu, layout: Layout, seed: str) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "key": gpu.key,
            "name": gpu.smi_name,
            "uuid": _uuid(f"{seed}/{i}"),
            "serial": str(int(_digest("serial", seed, i)[:12], 16))[:13],
            "pci_bus_id": f"00000000:{PCI_BUSES[i]}:00.0",
            "memory_total_mib": gpu.vram_mib,
            "bandwidth_gbs": gpu.bandwidth_gbs,
            "compute_cap": f"{gpu.compute_capability:.1f}",
            "numa_node": layout.numa[i],
            "cpu_affinity": layout.cpus[i],
            "nvlink_capable": gpu.nvlink != "none",
            "fabric_manager": gpu.fabric_manager,
            "links": _links(gpu, layout, i),
        }
        for i in range(len(layout.numa))
    ]


def _break_links(gpus: list[dict[str, Any]], fault: GpuFault) -> None:
    g = _gpu(gpus, fault)
    links = g["links"]
    if not links:
        raise TierkitError(f"--fault {fault}: GPU {fault.gpu} has no NVLink in this topology")
    if fault.link is not None and fault.link >= len(links):
        raise TierkitError(f"--fault {fault}: GPU {fault.gpu} has links 0-{len(links) - 1}")
    for n in range(len(links)) if fault.link is None else (fault.link,):
        links[n] = None


def _gpu(gpus: list[dict[str, Any]], fault: GpuFault) -> dict[str, Any]:
    if fault.gpu is None or fault.gpu >= len(gpus):
        raise TierkitError(f"--fault {fault}: the host has GPUs 0-{len(gpus) - 1}")
    return gpus[fault.gpu]


def faults_for(host: str, faults: list[GpuFault]) -> list[GpuFault]:
    return [f for f in faults if f.host in (None, host)]


def gpu_set(lab: str, host: str, gpu_key: str, count: int, topology: str,
            topology_text: str | None, faults: list[GpuFault]) -> dict[str, Any]:
    """The JSON a host's simulators answer from (/etc/tierkit-lab.json)."""
    ordered = lookup_gpu(gpu_key, field="--gpu")
    if not 1 <= count <= MAX_GPUS:
        raise TierkitError(f"--gpus-per-host: {count} is out of range; use 1 to {MAX_GPUS}")
    mine = faults_for(host, faults)
    wrong = [f.model for f in mine if f.kind == "wrong-model"]
    gpu = lookup_gpu(wrong[-1]) if wrong else ordered
    layout = replay(topology_text, count) if topology_text is not None else generate(
        gpu, count, topology)
    gpus = healthy_gpus(gpu, layout, f"{lab}/{host}")
    for fault in mine:
        if fault.kind == "inactive-link":
            _break_links(gpus, fault)
    gone = {_gpu(gpus, f)["index"] for f in mine if f.kind == "missing-gpu"}
    keep = [i for i in range(count) if i not in gone] + list(range(count, len(layout.devices)))
    labels = [f"GPU{n}" for n in range(count - len(gone))] + layout.devices[count:]
    present = [g for g in gpus if g["index"] not in gone]
    for n, g in enumerate(present):
        g["index"] = n
    return {
        "lab": lab,
        "host": host,
        "gpu_key": ordered.key,
        "smi_name": ordered.smi_name,
        "count": count,
        "topology": topology,
        "faults": [str(f) for f in mine],
        "driver_version": SIM_DRIVER_VERSION,
        "cuda_version": SIM_CUDA_VERSION,
        "fabric_manager_unit": FABRIC_MANAGER_UNIT,
        "devices": labels,
        "matrix": [[layout.matrix[r][c] for c in keep] for r in keep],
        "nics": layout.nics,
        "gpus": present,
        "nccl": {
            "nvlink_busbw_gbs": gpu.nccl_busbw_gbs if gpu.nvlink != "none" else 0.0,
            "pcie_busbw_gbs": gpu.nccl_busbw_gbs if gpu.nvlink == "none" else PCIE_BUSBW_GBS,
            "sys_factor": SYS_FACTOR,
            "latency_us": LATENCY_US,
        },
    }
