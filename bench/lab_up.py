#!/usr/bin/env python3
"""Benchmark the lab: `lab up` warm (image cached) and, with --cold, from nothing (the image built
by mmdebstrap into an empty cache first), memory per idle host, and `lab down`.

usage (as root): .venv/bin/python bench/lab_up.py [--hosts 3] [--cold] [--json]

Targets: warm up of 3 hosts a few seconds; cold under 3 minutes; down under 2 s/host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from typing import Any

from tierkit.lab import Lab
from tierkit.cache import CACHE_ROOT_ENV
from tierkit.lab.image import ensure_image

LAB = "tkbench"
SETTLE_S = 5.0  # let systemd finish starting units before memory is read


def one_run(hosts: int) -> dict[str, Any]:
    Lab.down(LAB)
    started = time.monotonic()
    lab = Lab.up(LAB, hosts, "h100-sxm", 8, quiet=True)
    up_s = time.monotonic() - started
    try:
        time.sleep(SETTLE_S)
        memory = {name: round(b / 2**20, 1) for name, b in lab.memory_bytes().items()}
    finally:
        started = time.monotonic()
        Lab.down(LAB)
        down_s = time.monotonic() - started
    return {"hosts": hosts, "up_s": round(up_s, 2), "down_s": round(down_s, 2),
            "down_s_per_host": round(down_s / hosts, 2), "memory_mib": memory}


def cold(hosts: int) -> dict[str, Any]:
    """A run against an empty cache: the image is built first, as on a fresh machine."""
    saved = os.environ.get(CACHE_ROOT_ENV)
    scratch = tempfile.mkdtemp(prefix="tierkit-bench-cache-", dir="/var/tmp")
    os.environ[CACHE_ROOT_ENV] = scratch
    try:
        return one_run(hosts)
    finally:
        if saved is None:
            os.environ.pop(CACHE_ROOT_ENV)
        else:
            os.environ[CACHE_ROOT_ENV] = saved
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also measure from an empty cache "
                        "(downloads Debian packages; about a minute or two)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.cold:
        results["cold"] = cold(args.hosts)
    ensure_image()  # warm means cached
    results["warm"] = one_run(args.hosts)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for kind, r in results.items():
        memory = r["memory_mib"].values()
        print(f"{kind}: lab up of {r['hosts']} hosts {r['up_s']:.1f} s; lab down {r['down_s']:.2f} s "
              f"({r['down_s_per_host']:.2f} s/host); memory per idle host "
              f"{min(memory):.0f}-{max(memory):.0f} MiB (PSS)")


if __name__ == "__main__":
    main()
