"""Helpers the roles' and site's lab tests share: a lab stack spec bound to a lab, a configure
run, and commands on lab hosts."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

from tierkit.ansible import RunResult
from tierkit.configure import configure
from tierkit.lab import Lab
from tierkit.paths import StackPaths
from tierkit.spec import TierSpec, parse_spec, spec_data_from_stack_file, stack_path

ROOT = Path(__file__).resolve().parents[2]


def lab_spec(stack: str, lab: Lab, **changes: Any) -> TierSpec:
    """The stack's spec, pointed at `lab` (its name, subnet, a VIP inside it), with `changes`
    merged into its sections (e.g. gpu={"model": "h100-sxm", "count": 4})."""
    data = spec_data_from_stack_file(stack_path(stack, ROOT))
    data["provider"] = {**data["provider"], "name": lab.name}
    if data.get("failover"):
        data["provider"]["subnet"] = str(lab.subnet)
        data["failover"] = {**data["failover"], "virtual_ip": str(lab.subnet[100])}
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values}
    return parse_spec(data)


def run(spec: TierSpec, lab: Lab, playbook: str, workdir: Path) -> RunResult:
    """`tierkit configure` for these hosts, as the CLI runs it (quietly)."""
    return configure(spec, lab.hosts, StackPaths(workdir, lab.name), playbook, quiet=True)


def sh(lab: Lab, host: str, command: str, check: bool = True) -> str:
    """Run a shell command on a lab host over SSH; its stdout."""
    done = lab.ssh(host, [shlex.join(["sh", "-c", command])], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"{host}: {command!r} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def in_switch(lab: Lab, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command in the lab's switch namespace (where clients live)."""
    return lab.run(argv, capture_output=True, text=True, timeout=timeout)


def failures(result: RunResult) -> str:
    return "; ".join(f"{f.host}: {f.task}: {f.message}" for f in result.failures)
