#!/usr/bin/env python3
"""How fast the `tierkit` command starts, and which heavy libraries each light verb pulls in.

Runs four commands that touch no server as subprocesses, through the `tierkit` console script
installed beside this interpreter, RUNS times each (after one untimed warm-up run that fills the
page cache), and prints the median, min and max wall time. Then runs each once more under
`python -X importtime` and names the heavy libraries it imported.

usage: .venv/bin/python bench/cli_start.py [--runs 10] [--json]
(run from the project root: `validate --stack` reads stacks/ there)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# (arguments, the exit status that means it answered): that plan exits 1, "does not fit" in bf16.
COMMANDS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("--version",), 0),
    (("--help",), 0),
    (("validate", "--stack", "single-gpu"), 0),
    (("plan", "--model", "llama-3.3-70b", "--gpu", "h100-sxm", "--gpus", "2"), 1),
)
HEAVY = ("pulumi", "grpc", "paramiko", "ansible", "ansible_runner")


def console_script() -> Path:
    script = Path(sys.executable).parent / "tierkit"
    if not script.is_file():
        sys.exit(f"error: no `tierkit` console script beside {sys.executable}; install tierkit into this venv")
    return script


def wall_times(argv: list[str], expect: int, runs: int) -> list[float]:
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - started
        if proc.returncode != expect:
            sys.exit(f"error: {' '.join(argv[1:])} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
        if i:  # the first run only warms the page cache
            times.append(elapsed)
    return times


def heavy_imports(script: Path, args: tuple[str, ...]) -> list[str]:
    """The HEAVY top-level packages `python -X importtime` reports for one run of the command."""
    proc = subprocess.run([sys.executable, "-X", "importtime", str(script), *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            top = line.rsplit("|", 1)[1].strip().split(".")[0]
            if top in HEAVY:
                found.add(top)
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command (default 10)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    script = console_script()
    rows: list[dict[str, Any]] = []
    for cmd, expect in COMMANDS:
        times = wall_times([str(script), *cmd], expect, args.runs)
        rows.append({
            "command": "tierkit " + " ".join(cmd),
            "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3),
            "max_s": round(max(times), 3),
            "heavy_imports": heavy_imports(script, cmd),
        })
    if args.json:
        print(json.dumps({"runs": args.runs, "cpus": os.cpu_count(), "commands": rows}, indent=2))
        return
    print(f"{args.runs} runs each ({os.cpu_count()} CPUs); wall seconds")
    width = max(len(r["command"]) for r in rows)
    print(f"{'command':<{width}}  median    min    max  heavy imports")
    for r in rows:
        heavy = ", ".join(r["heavy_imports"]) or "none"
        print(f"{r['command']:<{width}}  {r['median_s']:6.3f} {r['min_s']:6.3f} {r['max_s']:6.3f}  {heavy}")


if __name__ == "__main__":
    main()
