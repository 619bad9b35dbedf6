"""The one parser for nvidia-smi's topology output, and the tier's expectations of it.

Reads `nvidia-smi topo -m` (the GPU/NIC path matrix with CPU and NUMA affinity),
`nvidia-smi nvlink -s` (per-GPU, per-link speed or `<inactive>`) and
`nvidia-smi --query-gpu=<QUERY_GPU_FIELDS> --format=csv,noheader,nounits`. `parse` tells the
first two apart. Input that cannot be read raises `TopologyParseError` naming the line: a reading
is either right or refused, never guessed.

`check_tier` compares a reading with what the tier needs and returns one message per problem,
naming the GPU pair or link ("GPU1-GPU3: PHB, need NVLink for tensor_parallel=4").

Standard library only, no tierkit imports: the gpu_topology role ships this very file to the
hosts as `ansible.module_utils.tierkit_topology` (a symlink in roles/gpu_topology/module_utils/),
so the Ansible module and tierkit share one parser. Keep it importable on Python 3.8.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

# The columns `check_tier` and the gpu_topology module ask `nvidia-smi --query-gpu` for, in order.
QUERY_GPU_FIELDS = "index,name,uuid,memory.total,driver_version,pci.bus_id"

# Path codes in `topo -m` (its legend): X self; SYS (SOC before driver ~384), NODE, PHB, PXB, PIX
# are PCIe paths from farthest to nearest; NV# is a bond of # NVLinks.
PCIE_CODES = ("X", "SYS", "SOC", "NODE", "PHB", "PXB", "PIX")
_NV_CODE = re.compile(r"NV(\d+)")

# The per-GPU columns after the device columns, as the header spells them.
AFFINITY_COLUMNS = ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")
_AFFINITY_HEADER = re.compile("|".join(re.escape(c) for c in AFFINITY_COLUMNS))
_GPU_LABEL = re.compile(r"GPU(\d+)")
_NIC_LABEL = re.compile(r"[A-Za-z][\w.:-]*")
_NIC_LEGEND_ENTRY = re.compile(r"(NIC\d+):\s*(\S+)")
_CPU_RANGE = re.compile(r"(\d+)(?:-(\d+))?")

_NVLINK_GPU = re.compile(r"GPU (\d+): (.+?)(?: \(UUID: ([^)]*)\))?")
_NVLINK_LINK = re.compile(r"Link (\d+): (?:(\d+(?:\.\d+)?) GB/s|(<inactive>))")
_ALL_INACTIVE = "all links are inactive"  # NVML's message, lower-cased

CpuRanges = Tuple[Tuple[int, int], ...]


class TopologyParseError(ValueError):
    """The text is not nvidia-smi output this module can read; the message names the line."""


# --------------------------------------------------------------------------------------------
# topo -m


@dataclass(frozen=True)
class GpuAffinity:
    """One GPU row's affinity columns; None where the cell is N/A, empty or the column absent."""

    index: int
    cpu_affinity: Optional[CpuRanges]  # inclusive CPU ranges, e.g. ((0, 51), (104, 155))
    numa_affinity: Optional[Tuple[int, ...]]  # NUMA nodes
    gpu_numa_id: Optional[int]

    def to_json(self) -> Dict[str, Any]:
        return {
            "index": self.index,
            "cpu_affinity": None if self.cpu_affinity is None else [list(r) for r in self.cpu_affinity],
            "numa_affinity": None if self.numa_affinity is None else list(self.numa_affinity),
            "gpu_numa_id": self.gpu_numa_id,
        }


@dataclass(frozen=True)
class Nic:
    """A NIC column: its label (NIC0, or mlx5_0 on older drivers) and device name if known."""

    label: str
    name: Optional[str]  # from the NIC Legend; the label itself when the header names the device

    def to_json(self) -> Dict[str, Any]:
        return {"label": self.label, "name": self.name}


@dataclass(frozen=True)
class TopoMatrix:
    """A reading of `nvidia-smi topo -m`."""

    devices: Tuple[str, ...]  # row/column labels in order: GPU0..GPUn-1, then NICs
    cells: Tuple[Tuple[str, ...], ...]  # cells[r][c]: path code from devices[r] to devices[c]
    gpus: Tuple[GpuAffinity, ...]
    nics: Tuple[Nic, ...]
    columns: Tuple[str, ...]  # affinity columns the header had

    kind = "topo"

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    def path(self, a: int, b: int) -> str:
        """The path code between GPU a and GPU b (X when a == b)."""
        return self.cells[a][b]

    def nvlinks(self, a: int, b: int) -> int:
        """The number of bonded NVLinks between GPU a and GPU b; 0 over PCIe."""
        match = _NV_CODE.fullmatch(self.path(a, b))
        return int(match.group(1)) if match else 0

    @property
    def nvlink(self) -> List[List[int]]:
        """[[i, j, links], ...] for every NVLinked GPU pair, i < j, sorted."""
        n = self.gpu_count
        return [[i, j, self.nvlinks(i, j)] for i in range(n) for j in range(i + 1, n)
                if self.nvlinks(i, j)]

    def to_json(self) -> Dict[str, Any]:
        return {
            "kind": self.kind,
            "gpu_count": self.gpu_count,
            "nvlink": self.nvlink,
            "devices": list(self.devices),
            "matrix": [list(row) for row in self.cells],
            "gpus": [g.to_json() for g in self.gpus],
            "nics": [n.to_json() for n in self.nics],
        }


def _is_topo_header(tokens: Sequence[str]) -> bool:
    """The header starts with GPU0; the GPU0 row that follows it has X next."""
    return bool(tokens) and tokens[0] == "GPU0" and (len(tokens) == 1 or tokens[1] != "X")


def _valid_code(code: str) -> bool:
    return code in PCIE_CODES or _NV_CODE.fullmatch(code) is not None


def _header(line: str, lineno: int) -> Tuple[List[str], List[str]]:
    """Device labels and affinity column names from the header line."""
    found = list(_AFFINITY_HEADER.finditer(line))
    device_part = line[: found[0].start()] if found else line
    leftover = _AFFINITY_HEADER.sub("", line[len(device_part):]).strip()
    if leftover:
        raise TopologyParseError(f"line {lineno}: unknown column {leftover!r} in the topo -m header")
    devices = device_part.split()
    gpu_count = 0
    while gpu_count < len(devices) and _GPU_LABEL.fullmatch(devices[gpu_count]):
        if devices[gpu_count] != f"GPU{gpu_count}":
            raise TopologyParseError(
                f"line {lineno}: header column {devices[gpu_count]!r} out of order, "
                f"expected GPU{gpu_count}")
        gpu_count += 1
    for label in devices[gpu_count:]:
        if _GPU_LABEL.fullmatch(label) or not _NIC_LABEL.fullmatch(label):
            raise TopologyParseError(f"line {lineno}: unexpected header column {label!r}")
    if len(set(devices)) != len(devices):
        raise TopologyParseError(f"line {lineno}: a device column appears twice in the header")
    columns = [m.group(0) for m in found]
    if len(set(columns)) != len(columns):
        raise TopologyParseError(f"line {lineno}: an affinity column appears twice in the header")
    return devices, columns


def _cpu_ranges(cell: str, where: str) -> Optional[CpuRanges]:
    if cell == "N/A":
        return None
    ranges = []
    for part in cell.split(","):
        match = _CPU_RANGE.fullmatch(part)
        if not match:
            raise TopologyParseError(f"{where}: {cell!r} is not a CPU list (e.g. 0-23,48-71 or N/A)")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if high < low:
            raise TopologyParseError(f"{where}: range {part!r} runs backwards")
        ranges.append((low, high))
    return tuple(ranges)


def _gpu_numa_id(cell: str, where: str) -> Optional[int]:
    if cell == "N/A":
        return None
    if not cell.isdigit():
        raise TopologyParseError(f"{where}: {cell!r} is not a NUMA node number or N/A")
    return int(cell)


def _affinity_cells(tokens: List[str], columns: List[str], where: str) -> Dict[str, str]:
    """Pair a GPU row's trailing cells with the affinity columns, in order.

    Whitespace separates cells, so nvidia-smi's padding (the empty cell its double tab after
    NUMA Affinity makes) drops out. A row with some cells but fewer than the columns is refused:
    nvidia-smi's cells do not line up under their headers, so which one is missing is a guess.
    """
    if tokens and len(tokens) != len(columns):
        raise TopologyParseError(f"{where}: {len(tokens)} cells after the matrix, but the header "
                                 f"has {len(columns)} affinity columns ({', '.join(columns)})")
    return dict(zip(columns, tokens))


def _gpu_affinity(index: int, cells: Dict[str, str], where: str) -> GpuAffinity:
    cpu = cells.get("CPU Affinity")
    numa = cells.get("NUMA Affinity")
    numa_id = cells.get("GPU NUMA ID")
    numa_ranges = None if numa is None else _cpu_ranges(numa, f"{where}, NUMA Affinity")
    return GpuAffinity(
        index=index,
        cpu_affinity=None if cpu is None else _cpu_ranges(cpu, f"{where}, CPU Affinity"),
        numa_affinity=None if numa_ranges is None else tuple(
            node for low, high in numa_ranges for node in range(low, high + 1)),
        gpu_numa_id=None if numa_id is None else _gpu_numa_id(numa_id, f"{where}, GPU NUMA ID"),
    )


def _nic_legend(lines: Sequence[str]) -> Dict[str, str]:
    """NIC0 -> mlx5_0 from the `NIC Legend:` section, if the output has one."""
    legend: Dict[str, str] = {}
    in_legend = False
    for line in lines:
        stripped = line.strip()
        if stripped == "NIC Legend:":
            in_legend = True
            continue
        match = _NIC_LEGEND_ENTRY.fullmatch(stripped)
        if in_legend and match:
            legend[match.group(1)] = match.group(2)
        elif in_legend and stripped:
            break
    return legend


def parse_topo(text: str) -> TopoMatrix:
    """Read `nvidia-smi topo -m` output (tab- or space-separated, any text before the header)."""
    lines = text.splitlines()
    header_at = next((i for i, line in enumerate(lines) if _is_topo_header(line.split())), None)
    if header_at is None:
        raise TopologyParseError("no topo -m header (a line starting with GPU0 and its columns)")
    devices, columns = _header(lines[header_at], header_at + 1)
    gpu_count = sum(1 for d in devices if _GPU_LABEL.fullmatch(d))
    rows: List[Tuple[str, ...]] = []
    gpus: List[GpuAffinity] = []
    for r, label in enumerate(devices):
        lineno = header_at + 2 + r
        line = lines[lineno - 1] if lineno - 1 < len(lines) else ""
        tokens = line.split()
        if not tokens or tokens[0] != label:
            found = repr(tokens[0]) if tokens else "the end of the matrix"
            raise TopologyParseError(f"line {lineno}: expected the {label} row, found {found}")
        where = f"line {lineno} ({label})"
        cells = tuple(tokens[1:1 + len(devices)])
        if len(cells) < len(devices):
            raise TopologyParseError(f"{where}: {len(cells)} cells, the header has "
                                     f"{len(devices)} device columns")
        for c, code in enumerate(cells):
            if not _valid_code(code):
                raise TopologyParseError(f"{where}: {code!r} under {devices[c]} is not a path code "
                                         f"(X, SYS, NODE, PHB, PXB, PIX or NV#)")
            if (code == "X") != (c == r):
                raise TopologyParseError(f"{where}: {code!r} under {devices[c]}; X must be "
                                         f"exactly on the diagonal")
        rows.append(cells)
        rest = tokens[1 + len(devices):]
        if r < gpu_count:
            gpus.append(_gpu_affinity(r, _affinity_cells(rest, columns, where), where))
        elif rest:
            raise TopologyParseError(f"{where}: unexpected cells after the matrix: "
                                     f"{' '.join(rest)!r}")
    for r in range(len(devices)):
        for c in range(r + 1, len(devices)):
            if rows[r][c] != rows[c][r]:
                raise TopologyParseError(
                    f"{devices[r]}-{devices[c]} reads {rows[r][c]} but {devices[c]}-{devices[r]} "
                    f"reads {rows[c][r]}; the matrix must be symmetric")
    legend = _nic_legend(lines[header_at + 1 + len(devices):])
    unknown = sorted(set(legend) - set(devices))
    if unknown:
        raise TopologyParseError(f"NIC Legend names {', '.join(unknown)}, not in the matrix")
    nics = tuple(Nic(label=d, name=legend.get(d) if re.fullmatch(r"NIC\d+", d) else d)
                 for d in devices[gpu_count:])
    return TopoMatrix(devices=tuple(devices), cells=tuple(rows), gpus=tuple(gpus), nics=nics,
                      columns=tuple(columns))


# --------------------------------------------------------------------------------------------
# nvlink -s


@dataclass(frozen=True)
class Link:
    link: int
    gbps: Optional[float]  # None when `<inactive>`

    @property
    def active(self) -> bool:
        return self.gbps is not None

    def to_json(self) -> Dict[str, Any]:
        return {"link": self.link, "gbps": self.gbps, "active": self.active}


@dataclass(frozen=True)
class NvlinkGpu:
    index: int
    name: str
    uuid: Optional[str]
    links: Tuple[Link, ...]
    all_inactive: bool  # NVML: "Unable to retrieve NVLink information as all links are inActive"

    @property
    def inactive(self) -> List[int]:
        return [link.link for link in self.links if not link.active]

    def to_json(self) -> Dict[str, Any]:
        return {"index": self.index, "name": self.name, "uuid": self.uuid,
                "links": [link.to_json() for link in self.links],
                "all_inactive": self.all_inactive}


@dataclass(frozen=True)
class NvlinkStatus:
    """A reading of `nvidia-smi nvlink -s`."""

    gpus: Tuple[NvlinkGpu, ...]

    kind = "nvlink"

    def gpu(self, index: int) -> Optional[NvlinkGpu]:
        return next((g for g in self.gpus if g.index == index), None)

    @property
    def inactive(self) -> List[List[int]]:
        """[[gpu, link], ...] for every link nvidia-smi lists as `<inactive>`."""
        return [[g.index, link] for g in self.gpus for link in g.inactive]

    def to_json(self) -> Dict[str, Any]:
        return {"kind": self.kind, "gpus": [g.to_json() for g in self.gpus],
                "inactive": self.inactive}


def parse_nvlink(text: str) -> NvlinkStatus:
    """Read `nvidia-smi nvlink -s` output; lines before the first `GPU n:` line are skipped."""
    blocks: List[Dict[str, Any]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        gpu = _NVLINK_GPU.fullmatch(line)
        if gpu:
            index = int(gpu.group(1))
            if any(b["index"] == index for b in blocks):
                raise TopologyParseError(f"line {lineno}: GPU {index} appears twice")
            blocks.append({"index": index, "name": gpu.group(2), "uuid": gpu.group(3),
                           "links": [], "all_inactive": False})
            continue
        if not blocks or not line:
            continue
        block = blocks[-1]
        link = _NVLINK_LINK.fullmatch(line)
        if link:
            number = int(link.group(1))
            if any(known.link == number for known in block["links"]):
                raise TopologyParseError(f"line {lineno}: GPU {block['index']} link {number} "
                                         f"appears twice")
            block["links"].append(Link(number, None if link.group(3) else float(link.group(2))))
        elif _ALL_INACTIVE in line.lower():
            block["all_inactive"] = True
        else:
            raise TopologyParseError(f"line {lineno}: {line!r} is not a 'Link N: <speed> GB/s' "
                                     f"or 'Link N: <inactive>' line")
    if not blocks:
        raise TopologyParseError("no nvlink -s GPU line (like 'GPU 0: <name> (UUID: ...)')")
    return NvlinkStatus(gpus=tuple(
        NvlinkGpu(index=b["index"], name=b["name"], uuid=b["uuid"], links=tuple(b["links"]),
                  all_inactive=b["all_inactive"]) for b in blocks))


def parse(text: str) -> Union[TopoMatrix, NvlinkStatus]:
    """Read either format, telling them apart by their first recognisable line."""
    for line in text.splitlines():
        if _is_topo_header(line.split()):
            return parse_topo(text)
        if _NVLINK_GPU.fullmatch(line.strip()):
            return parse_nvlink(text)
    raise TopologyParseError("neither nvidia-smi topo -m output (no header starting with GPU0) "
                             "nor nvidia-smi nvlink -s output (no 'GPU 0: ...' line)")


# --------------------------------------------------------------------------------------------
# --query-gpu


@dataclass(frozen=True)
class GpuInfo:
    """One line of `nvidia-smi --query-gpu=<QUERY_GPU_FIELDS> --format=csv,noheader,nounits`."""

    index: int
    name: str
    uuid: str
    memory_total_mib: int
    driver_version: str
    pci_bus_id: str

    def to_json(self) -> Dict[str, Any]:
        return {"index": self.index, "name": self.name, "uuid": self.uuid,
                "memory_total_mib": self.memory_total_mib,
                "driver_version": self.driver_version, "pci_bus_id": self.pci_bus_id}


def parse_query_gpu(text: str) -> Tuple[GpuInfo, ...]:
    """Read the CSV lines; each must have the QUERY_GPU_FIELDS columns, numbers where expected."""
    width = len(QUERY_GPU_FIELDS.split(","))
    gpus: List[GpuInfo] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        fields = [f.strip() for f in raw.split(",")]
        if len(fields) != width:
            raise TopologyParseError(f"line {lineno}: {len(fields)} fields, expected {width} "
                                     f"({QUERY_GPU_FIELDS})")
        index, name, uuid, memory, driver, bus_id = fields
        if not index.isdigit() or not memory.isdigit():
            raise TopologyParseError(f"line {lineno}: index {index!r} and memory.total {memory!r} "
                                     f"must be numbers (use --format=csv,noheader,nounits)")
        if any(g.index == int(index) for g in gpus):
            raise TopologyParseError(f"line {lineno}: GPU {index} appears twice")
        gpus.append(GpuInfo(int(index), name, uuid, int(memory), driver, bus_id))
    if not gpus:
        raise TopologyParseError("no --query-gpu lines")
    return tuple(gpus)


# --------------------------------------------------------------------------------------------
# the tier's expectations


def tp_groups(gpu_count: int, tensor_parallel: int) -> List[List[int]]:
    """The GPUs of each full tensor-parallel group: [0..tp-1], [tp..2tp-1], ..."""
    return [list(range(start, start + tensor_parallel))
            for start in range(0, gpu_count - tensor_parallel + 1, tensor_parallel)]


def _check_nvlink_status(nvlink: Optional[NvlinkStatus], gpus: List[int]) -> List[str]:
    if nvlink is None:
        return ["NVLink status: not read; run nvidia-smi nvlink -s to check for inactive links"]
    problems: List[str] = []
    for index in gpus:
        status = nvlink.gpu(index)
        if status is None:
            problems.append(f"GPU{index}: missing from nvidia-smi nvlink -s")
        elif status.all_inactive:
            problems.append(f"GPU{index}: all NVLinks inactive")
        else:
            problems.extend(f"GPU{index} link {link}: inactive" for link in status.inactive)
    return problems


def check_tier(topo: TopoMatrix, *, nvlink: Optional[NvlinkStatus] = None,
               gpus: Optional[Sequence[GpuInfo]] = None, expected_count: Optional[int] = None,
               expected_names: Sequence[str] = (), tensor_parallel: int = 1,
               require_nvlink: bool = False, min_links: int = 0) -> List[str]:
    """One message per way the host falls short of the tier; empty when it matches.

    The GPU count must equal `expected_count`, and every GPU's `--query-gpu` name must be one of
    `expected_names` (the names one catalog GPU prints; each check only when given). With `require_nvlink` and tensor_parallel > 1,
    every pair inside a TP group must be NV# with at least `min_links` links, and no link of a
    GPU in a group may be inactive in `nvlink` (read it whenever there are NV pairs).
    """
    if tensor_parallel < 1 or min_links < 0:
        return [f"tensor_parallel={tensor_parallel}, min_links={min_links}: tensor_parallel must "
                f"be 1 or more and min_links 0 or more"]
    problems: List[str] = []
    count = topo.gpu_count
    if expected_count is not None and count != expected_count:
        problems.append(f"GPU count: found {count}, expected {expected_count}")
    if gpus is not None and len(gpus) != count:
        problems.append(f"GPU count: nvidia-smi --query-gpu lists {len(gpus)}, "
                        f"topo -m lists {count}")
    if expected_names:
        wanted = " or ".join(expected_names)
        if gpus is None:
            problems.append(f"GPU model: no nvidia-smi --query-gpu reading to compare with {wanted}")
        else:
            problems.extend(f"GPU{g.index}: {g.name}, expected {wanted}"
                            for g in gpus if g.name not in expected_names)
    if tensor_parallel > count:
        problems.append(f"tensor_parallel={tensor_parallel}: needs {tensor_parallel} GPUs, "
                        f"found {count}")
    if not require_nvlink or tensor_parallel == 1:
        return problems
    linked: List[int] = []  # GPUs of groups that have NVLinks, whose links must all be active
    for group in tp_groups(count, tensor_parallel):
        if any(topo.nvlinks(i, j) for i, j in combinations(group, 2)):
            linked.extend(group)
        for i, j in combinations(group, 2):
            links = topo.nvlinks(i, j)
            if not links:
                problems.append(f"GPU{i}-GPU{j}: {topo.path(i, j)}, need NVLink for "
                                f"tensor_parallel={tensor_parallel}")
            elif links < min_links:
                problems.append(f"GPU{i}-GPU{j}: NV{links}, need at least NV{min_links} for "
                                f"tensor_parallel={tensor_parallel}")
    if linked:
        problems.extend(_check_nvlink_status(nvlink, linked))
    return problems
