#!/usr/bin/python3
"""A simulated `nvidia-smi` for tierkit lab hosts (no GPU): answers from /etc/tierkit-lab.json.

Installed as /usr/bin/nvidia-smi. Standard library only, Python 3.8+. It answers the queries the
roles make, in nvidia-smi's own formats: `-L`, `--query-gpu=... --format=csv[,noheader][,nounits]`,
`topo -m`, `nvlink -s`, `-q` (with a Fabric section on NVSwitch GPUs), `--version` and the bare
summary table. The GPU set file lists the GPUs as they are (faults already applied by the lab).

On NVSwitch GPUs the fabric is registered only while nvidia-fabricmanager runs, as on a real HGX
board: `-q` shows Fabric State "In Progress" until the unit is active.
"""

import json
import os
import subprocess
import sys
import time

GPU_SET_FILE = os.environ.get("TIERKIT_LAB_GPU_SET", "/etc/tierkit-lab.json")
# Persistence mode lasts until the next boot, as the driver's does (/run is a tmpfs).
PERSISTENCE_FILE = os.environ.get("TIERKIT_LAB_PERSISTENCE", "/run/tierkit-lab-persistence-mode")

LEGEND = """\
Legend:

  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node
  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)
  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)
  PIX  = Connection traversing at most a single PCIe bridge
  NV#  = Connection traversing a bonded set of # NVLinks
"""

ALL_INACTIVE = "\t NVML: Unable to retrieve NVLink information as all links are inActive"

# --query-gpu fields: (header, value with units, value without units)
_FIELDS = {
    "index": ("index", lambda g, s: str(g["index"]), None),
    "name": ("name", lambda g, s: g["name"], None),
    "uuid": ("uuid", lambda g, s: g["uuid"], None),
    "memory.total": ("memory.total [MiB]", lambda g, s: "%d MiB" % g["memory_total_mib"],
                     lambda g, s: str(g["memory_total_mib"])),
    "memory.used": ("memory.used [MiB]", lambda g, s: "0 MiB", lambda g, s: "0"),
    "memory.free": ("memory.free [MiB]", lambda g, s: "%d MiB" % g["memory_total_mib"],
                    lambda g, s: str(g["memory_total_mib"])),
    "driver_version": ("driver_version", lambda g, s: s["driver_version"], None),
    "pci.bus_id": ("pci.bus_id", lambda g, s: g["pci_bus_id"], None),
    "count": ("count", lambda g, s: str(len(s["gpus"])), None),
    "compute_cap": ("compute_cap", lambda g, s: g["compute_cap"], None),
    "persistence_mode": ("persistence_mode", lambda g, s: persistence(), None),
    "fabric.state": ("fabric.state", lambda g, s: fabric(g, s)[0], None),
    "fabric.status": ("fabric.status", lambda g, s: fabric(g, s)[1], None),
}
_ALIASES = {"gpu_name": "name", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id"}


def load():
    try:
        with open(GPU_SET_FILE) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        sys.stderr.write("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
                         "driver. Make sure that the latest NVIDIA driver is installed and "
                         "running.\n\n")
        sys.exit(9)


def persistence():
    return "Enabled" if os.path.exists(PERSISTENCE_FILE) else "Disabled"


def set_persistence(s, value):
    if value not in ("0", "1"):
        sys.stderr.write("Invalid value for persistence mode: %s (use 0 or 1)\n" % value)
        sys.exit(2)
    if value == "1":
        open(PERSISTENCE_FILE, "w").close()
    elif os.path.exists(PERSISTENCE_FILE):
        os.unlink(PERSISTENCE_FILE)
    word = "Enabled" if value == "1" else "Disabled"
    return "".join("%s persistence mode for GPU %s.\n" % (word, g["pci_bus_id"])
                   for g in s["gpus"]) + "All done.\n"


def fabric_manager_running(unit):
    try:
        return subprocess.call(["systemctl", "is-active", "--quiet", unit],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    except OSError:
        return False


def fabric(gpu, s):
    """(state, status) of the NVSwitch fabric for this GPU; ("N/A", "N/A") without NVSwitch."""
    if not gpu.get("fabric_manager"):
        return "N/A", "N/A"
    if "fabric_registered" not in s:  # ask systemd once per run
        s["fabric_registered"] = fabric_manager_running(s["fabric_manager_unit"])
    return ("Completed", "Success") if s["fabric_registered"] else ("In Progress", "N/A")


def list_gpus(s):
    return "".join("GPU %d: %s (UUID: %s)\n" % (g["index"], g["name"], g["uuid"])
                   for g in s["gpus"])


def query_gpu(s, fields, fmt):
    if fmt is None or "csv" not in fmt:
        sys.stderr.write("Option --format must be specified with --query-gpu (e.g. "
                         "--format=csv).\n")
        sys.exit(2)
    names = [f.strip() for f in fields.split(",") if f.strip()]
    for name in names:
        if _ALIASES.get(name, name) not in _FIELDS:
            sys.stdout.write('Field "%s" is not a valid field to query.\n\n' % name)
            sys.exit(2)
    columns = [_FIELDS[_ALIASES.get(n, n)] for n in names]
    lines = []
    if "noheader" not in fmt:
        lines.append(", ".join(c[0] for c in columns))
    nounits = "nounits" in fmt
    for g in s["gpus"]:
        lines.append(", ".join((c[2] if nounits and c[2] else c[1])(g, s) for c in columns))
    return "\n".join(lines) + "\n"


def topo_matrix(s):
    devices = s["devices"]
    gpus = {"GPU%d" % g["index"]: g for g in s["gpus"]}
    out = ["\t" + "\t".join(devices) + "\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID"]
    for r, label in enumerate(devices):
        cells = [" X " if code == "X" else code for code in s["matrix"][r]]
        row = label + "\t" + "\t".join(cells)
        g = gpus.get(label)
        if g is not None:
            row += "\t%s\t%s\t\t%s" % (g["cpu_affinity"], g["numa_node"], "N/A")
        out.append(row)
    text = "\n".join(out) + "\n\n" + LEGEND
    nics = s.get("nics") or []
    if any(n["label"].startswith("NIC") and n.get("name") for n in nics):
        text += "\nNIC Legend:\n\n" + "".join(
            "  %s: %s\n" % (n["label"], n["name"]) for n in nics if n["label"].startswith("NIC"))
    return text


def nvlink_status(s, only=None):
    out = []
    for g in s["gpus"]:
        if only is not None and g["index"] != only:
            continue
        out.append("GPU %d: %s (UUID: %s)" % (g["index"], g["name"], g["uuid"]))
        links = g.get("links") or []
        if g.get("nvlink_capable") and (not links or all(v is None for v in links)):
            out.append(ALL_INACTIVE)
            continue
        for n, speed in enumerate(links):
            out.append("\t Link %d: %s" % (n, "<inactive>" if speed is None else
                                           "%.3f GB/s" % speed))
    return "\n".join(out) + "\n"


def _kv(indent, key, value, width=42):
    pad = " " * indent
    return "%s%s: %s" % (pad, key.ljust(width - len(pad)), value)


def query_all(s):
    out = ["", "==============NVSMI LOG==============", "",
           _kv(0, "Timestamp", time.strftime("%a %b %d %H:%M:%S %Y")),
           _kv(0, "Driver Version", s["driver_version"]),
           _kv(0, "CUDA Version", s["cuda_version"]), "",
           _kv(0, "Attached GPUs", len(s["gpus"]))]
    for g in s["gpus"]:
        bus = g["pci_bus_id"].split(":")
        out += [
            "GPU " + g["pci_bus_id"],
            _kv(4, "Product Name", g["name"]),
            _kv(4, "Product Brand", "NVIDIA"),
            _kv(4, "Persistence Mode", persistence()),
            _kv(4, "Serial Number", g["serial"]),
            _kv(4, "GPU UUID", g["uuid"]),
            _kv(4, "Minor Number", g["index"]),
            _kv(4, "MultiGPU Board", "No"),
            "    PCI",
            _kv(8, "Bus", "0x" + bus[1]),
            _kv(8, "Device", "0x00"),
            _kv(8, "Domain", "0x" + bus[0][-4:]),
            _kv(8, "Bus Id", g["pci_bus_id"]),
        ]
        if g.get("fabric_manager"):
            state, status = fabric(g, s)
            done = state == "Completed"
            out += [
                "    Fabric",
                _kv(8, "State", state),
                _kv(8, "Status", status),
                _kv(8, "CliqueId", "0" if done else "N/A"),
                _kv(8, "ClusterUUID", "00000000-0000-0000-0000-000000000000" if done else "N/A"),
            ]
        out += [
            "    FB Memory Usage",
            _kv(8, "Total", "%d MiB" % g["memory_total_mib"]),
            _kv(8, "Reserved", "0 MiB"),
            _kv(8, "Used", "0 MiB"),
            _kv(8, "Free", "%d MiB" % g["memory_total_mib"]),
            _kv(4, "Compute Mode", "Default"),
            "",
        ]
    return "\n".join(out) + "\n"


def summary(s):
    bar = "+-----------------------------------------+------------------------+----------------------+"
    out = [time.strftime("%a %b %d %H:%M:%S %Y"),
           "+-----------------------------------------------------------------------------------------+",
           "| NVIDIA-SMI %-20s Driver Version: %-14s CUDA Version: %-8s |"
           % (s["driver_version"], s["driver_version"], s["cuda_version"]),
           bar,
           "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
           "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
           "=" * len(bar)]
    for g in s["gpus"]:
        out += ["| %3d  %-24s  On  | %-16s Off |                    0 |"
                % (g["index"], g["name"][:24], g["pci_bus_id"][4:]),
                "| N/A   30C    P0             70W /  700W |  %9s / %9s |      0%%      Default |"
                % ("0MiB", "%dMiB" % g["memory_total_mib"]),
                bar]
    return "\n".join(out) + "\n"


def version(s):
    return ("NVIDIA-SMI version  : %s\nNVML version        : %s\nDRIVER version      : %s\n"
            "CUDA Version        : %s\n" % (s["driver_version"], s["driver_version"].rsplit(".", 1)[0],
                                         s["driver_version"], s["cuda_version"]))


def option(args, *names):
    """The value of `--name=value`, `--name value` or `-n value`; None when absent."""
    for i, arg in enumerate(args):
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
            if arg == name and i + 1 < len(args):
                return args[i + 1]
    return None


def main(argv):
    s = load()
    if not s["gpus"]:
        sys.stdout.write("No devices were found\n")
        return 6
    args = argv[1:]
    if not args:
        out = summary(s)
    elif args[0] == "topo":
        if not any(a in ("-m", "--matrix") for a in args[1:]):
            sys.stderr.write("Usage: nvidia-smi topo -m\n")
            return 2
        out = topo_matrix(s)
    elif args[0] == "nvlink":
        if not any(a in ("-s", "--status") for a in args[1:]):
            sys.stderr.write("Usage: nvidia-smi nvlink -s [-i GPU]\n")
            return 2
        only = option(args, "-i", "--id")
        out = nvlink_status(s, None if only is None else int(only))
    elif args[0] in ("-L", "--list-gpus"):
        out = list_gpus(s)
    elif args[0] in ("-q", "--query"):
        out = query_all(s)
    elif args[0] == "--version":
        out = version(s)
    elif option(args, "-pm", "--persistence-mode") is not None:
        out = set_persistence(s, option(args, "-pm", "--persistence-mode"))
    elif option(args, "--query-gpu") is not None:
        out = query_gpu(s, option(args, "--query-gpu"), option(args, "--format"))
    else:
        sys.stderr.write("nvidia-smi (tierkit lab): unsupported arguments: %s\n" % " ".join(args))
        return 2
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
