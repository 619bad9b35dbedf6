"""Shared steps of the `tierkit up` end-to-end tests (tests/lab/test_up_*.py): run the CLI as a
user does, read what a deploy left on the lab host, and time it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierkit.paths import StackPaths
from tierkit.spec import load_stack

ROOT = Path(__file__).resolve().parents[2]
TIERKIT = str(ROOT / ".venv" / "bin" / "tierkit")
UP_TIMEOUT_S = 1800
CHANGED_TASK = re.compile(r"^\s+configure \|\s+\S+\s+changed\s", re.M)


@dataclass
class Up:
    proc: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def result(self) -> dict[str, Any]:
        return json.loads(self.proc.stdout)

    @property
    def log(self) -> str:
        return self.proc.stderr


def tierkit(*args: str, env: dict[str, str] | None = None, timeout: float = UP_TIMEOUT_S,
            cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`tierkit ARGS` in project directory `cwd` (default: this repository), as a user runs it."""
    return subprocess.run([TIERKIT, *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


def up(stack: str, env: dict[str, str] | None = None, *args: str, cwd: Path = ROOT) -> Up:
    started = time.monotonic()
    proc = tierkit("up", "--stack", stack, "--json", *args, env=env, cwd=cwd)
    return Up(proc, time.monotonic() - started)


def lab_name(stack: str, root: Path = ROOT) -> str:
    return load_stack(stack, root).provider.name  # type: ignore[union-attr]


def on_host(host: str, command: str) -> str:
    proc = tierkit("lab", "ssh", host, "--", command, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def vllm_main_pid(host: str) -> int:
    return int(on_host(host, "systemctl show -p MainPID --value vllm.service"))


def state_dir(stack: str, root: Path = ROOT) -> Path:
    return StackPaths(root, stack).state_dir


def clean(stack: str) -> None:
    """Nothing of the stack before a test starts: its recorded deletes, then its lab."""
    tierkit("down", "--stack", stack, timeout=300)
    tierkit("lab", "down", lab_name(stack), timeout=300)


def deployed(stack: str, env: dict[str, str] | None = None, *args: str) -> Iterator[Up]:
    """A module fixture's body: clean, `tierkit up ARGS` from nothing, and `tierkit down` after."""
    clean(stack)
    try:
        yield up(stack, env, *args)
    finally:
        clean(stack)


def down_leaves_nothing(stack: str, find_leftovers: Callable[[str], list[str]],
                        root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`tierkit down` of a lab stack (of the project in `root`): every recorded delete ran, nothing
    of the lab or the stack's state is left. Returns the command's result for further checks."""
    proc = tierkit("down", "--stack", stack, "--json", timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)["deleted"]) == {"smoke", "calibrate", "configure", "wait-ssh", "lab"}
    assert find_leftovers(lab_name(stack, root)) == []
    state = state_dir(stack, root)
    kept = sorted(p.name for p in state.iterdir()) if state.exists() else []
    assert kept in ([], ["history.jsonl"]), kept  # the up history outlives down (tierkit/history.py)
    return proc


def report_timing(stack: str, what: str, seconds: float) -> None:
    line = f"tierkit up --stack {stack}: {what} {seconds:.1f} s"
    print(line)
    log = Path("/var/cache/tierkit/logs/up-times.txt")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line + "\n")
