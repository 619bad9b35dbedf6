#!/usr/bin/python3
"""A simulated nccl-tests `all_reduce_perf` for tierkit lab hosts (no GPU).

Installed as /usr/bin/all_reduce_perf. Standard library only, Python 3.8+. It prints
nccl-tests' own format, with timings from the host's simulated topology (/etc/tierkit-lab.json):
a ring over the GPUs used, NCCL's best ring, runs at the bandwidth of its slowest hop. An NVLink
hop runs at the GPU's NVLink bus bandwidth scaled by its share of active links; a PCIe hop at the
PCIe figure, lower across NUMA nodes (SYS). A size takes latency + size / algbw, and
busbw = algbw x 2(n-1)/n, as nccl-tests computes it.

On NVSwitch GPUs it fails with CUDA error 802 ("system not yet initialized") unless
nvidia-fabricmanager runs, as a real HGX board does.
"""

import itertools
import json
import os
import socket
import subprocess
import sys

GPU_SET_FILE = os.environ.get("TIERKIT_LAB_GPU_SET", "/etc/tierkit-lab.json")

TYPE_BYTES = {"int8": 1, "char": 1, "uint8": 1, "int32": 4, "int": 4, "uint32": 4, "int64": 8,
              "uint64": 8, "half": 2, "float16": 2, "bfloat16": 2, "float": 4, "float32": 4,
              "double": 8, "float64": 8}
OPS = ("sum", "prod", "min", "max", "avg", "all")


def parse_size(text):
    """nccl-tests sizes: a byte count with an optional K, M or G suffix (powers of 1024)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def parse_args(argv):
    opts = {"b": "32M", "e": "32M", "f": "2", "i": "0", "g": "1", "t": "1", "n": "20", "w": "5",
            "c": "1", "d": "float", "o": "sum", "a": "0", "G": "0", "m": "1"}
    long_names = {"minbytes": "b", "maxbytes": "e", "stepfactor": "f", "stepbytes": "i",
                  "ngpus": "g", "nthreads": "t", "iters": "n", "warmup_iters": "w", "check": "c",
                  "datatype": "d", "op": "o", "average": "a", "cudagraph": "G", "agg_iters": "m"}
    args = list(argv)
    while args:
        arg = args.pop(0)
        key, value = arg.lstrip("-"), None
        if "=" in key:
            key, value = key.split("=", 1)
        key = long_names.get(key, key)
        if not arg.startswith("-") or key not in opts:
            raise SystemExit("all_reduce_perf: invalid option %r" % arg)
        opts[key] = value if value is not None else (args.pop(0) if args else "")
    return opts


def active_share(gpu):
    links = gpu.get("links") or []
    return sum(1 for v in links if v is not None) / len(links) if links else 0.0


def hop_busbw(s, i, j):
    """Bus bandwidth, GB/s, one ring hop between GPU i and GPU j can carry."""
    nccl = s["nccl"]
    code = s["matrix"][i][j]
    pcie = nccl["pcie_busbw_gbs"] * (nccl["sys_factor"] if code == "SYS" else 1.0)
    if code.startswith("NV"):
        share = min(active_share(s["gpus"][i]), active_share(s["gpus"][j]))
        return max(nccl["nvlink_busbw_gbs"] * share, pcie)
    return pcie


def ring_busbw(s, n):
    """The bus bandwidth of the best ring over GPUs 0..n-1: the widest bottleneck."""
    if n < 2:
        return 0.0
    best = 0.0
    for rest in itertools.permutations(range(1, n)):
        ring = (0,) + rest
        if n > 2 and rest[0] > rest[-1]:
            continue  # the same ring walked backwards
        worst = min(hop_busbw(s, ring[k], ring[(k + 1) % n]) for k in range(n))
        best = max(best, worst)
    return best


def fabric_manager_running(unit):
    try:
        return subprocess.call(["systemctl", "is-active", "--quiet", unit],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    except OSError:
        return False


def time_str(usec):
    if usec >= 10000.0:
        return "%7.0f" % usec
    if usec >= 100.0:
        return "%7.1f" % usec
    return "%7.2f" % usec


def sizes(opts):
    low, high = parse_size(opts["b"]), parse_size(opts["e"])
    factor, step = int(opts["f"]), parse_size(opts["i"])
    size = low
    while size <= high:
        yield size
        if step:
            size += step
        elif factor > 1:
            size *= factor
        else:
            break


def run(argv, out):
    opts = parse_args(argv)
    host = socket.gethostname()
    try:
        with open(GPU_SET_FILE) as handle:
            s = json.load(handle)
    except (OSError, ValueError):
        out.write("%s: Test CUDA failure common.cu:892 'no CUDA-capable device is detected'\n" % host)
        return 1
    n = int(opts["g"]) * int(opts["t"])
    dtype, op = opts["d"], opts["o"]
    if dtype not in TYPE_BYTES or op not in OPS:
        out.write("all_reduce_perf: invalid datatype %r or op %r\n" % (dtype, op))
        return 1
    check = int(opts["c"])
    out.write("# nThread %s nGpus %s minBytes %d maxBytes %d step: %s(%s) warmup iters: %s "
              "iters: %s agg iters: %s validation: %d graph: %s\n"
              % (opts["t"], opts["g"], parse_size(opts["b"]), parse_size(opts["e"]),
                 opts["i"] if parse_size(opts["i"]) else opts["f"],
                 "bytes" if parse_size(opts["i"]) else "factor",
                 opts["w"], opts["n"], opts["m"], check, opts["G"]))
    out.write("#\n# Using devices\n")
    if n > len(s["gpus"]):
        out.write("%s: Test CUDA failure common.cu:892 'invalid device ordinal'\n"
                  " .. %s pid %d: Test failure common.cu:842\n" % (host, host, os.getpid()))
        return 1
    used = s["gpus"][:n]
    if any(g.get("fabric_manager") for g in used) and not fabric_manager_running(
            s["fabric_manager_unit"]):
        out.write("%s: Test CUDA failure common.cu:892 'system not yet initialized'\n"
                  " .. %s pid %d: Test failure common.cu:842\n" % (host, host, os.getpid()))
        return 1
    for rank, g in enumerate(used):
        bus = int(g["pci_bus_id"].split(":")[1], 16)
        out.write("#  Rank %2d Group %2d Pid %6d on %10s device %2d [0x%02x] %s\n"
                  % (rank, 0, os.getpid(), host, g["index"], bus, g["name"]))
    out.write("#\n")
    out.write("#                                                              out-of-place"
              "                       in-place          \n")
    out.write("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s %6s  %7s  %6s  %6s %6s\n"
              % ("size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong",
                 "time", "algbw", "busbw", "#wrong"))
    out.write("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %5s  %7s  %6s  %6s  %5s\n"
              % ("(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)",
                 "(GB/s)", "(GB/s)", ""))
    factor = 2.0 * (n - 1) / n
    peak_busbw = ring_busbw(s, n)
    # algbw the ring sustains; one GPU only copies locally (read + write of its memory)
    peak_algbw = peak_busbw / factor if n > 1 else used[0]["bandwidth_gbs"] / 2
    latency = s["nccl"]["latency_us"]
    busbws = []
    for size in sizes(opts):
        count = size // TYPE_BYTES[dtype]
        nbytes = count * TYPE_BYTES[dtype]
        usec = latency + nbytes / (peak_algbw * 1e3)
        algbw = nbytes / usec / 1e3
        busbw = algbw * factor
        wrong = "0" if check else "N/A"
        cells = "  %7s  %6.2f  %6.2f  %5s" % (time_str(usec), algbw, busbw, wrong)
        out.write("%12d  %12d  %8s  %6s  %6d%s%s\n" % (nbytes, count, dtype, op, -1, cells, cells))
        busbws += [busbw, busbw]
    average = sum(busbws) / len(busbws) if busbws else 0.0
    out.write("# Out of bounds values : 0 OK\n")
    out.write("# Avg bus bandwidth    : %g \n#\n\n" % average)
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:], sys.stdout))
