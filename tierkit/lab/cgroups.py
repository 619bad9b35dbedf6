"""Each lab host runs in a cgroup of its own, so the lab can find, measure and kill all of it.

nspawn started with --keep-unit from a shared cgroup makes every container share one `payload`
cgroup, so each host's supervisor joins `tierkit-lab/<lab>/<host>` in the unified (cgroup2)
hierarchy and in the v1 name=systemd one (where the machine has it) before it execs nspawn.
SIGKILL on nspawn leaves the guest running; killing every PID in the host's cgroups does not.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tierkit.errors import TierkitError

BASE = "tierkit-lab"


def hierarchies() -> list[Path]:
    """Mount points of the cgroup2 hierarchy and of the v1 name=systemd one."""
    found: list[Path] = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields, _, tail = line.partition(" - ")
            fstype, _source, options = (tail.split() + ["", ""])[:3]
            named_systemd = fstype == "cgroup" and "name=systemd" in options.split(",")
            point = Path(fields.split()[4])
            if (fstype == "cgroup2" or named_systemd) and point not in found:
                found.append(point)
    if not found:
        raise TierkitError("lab: no cgroup2 or name=systemd cgroup hierarchy is mounted; "
                           "mount cgroup2 at /sys/fs/cgroup/unified or /sys/fs/cgroup")
    return found


def lab_dirs(lab: str) -> list[Path]:
    return [h / BASE / lab for h in hierarchies()]


def host_dirs(lab: str, host: str) -> list[Path]:
    return [d / host for d in lab_dirs(lab)]


def create(dirs: list[Path]) -> None:
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)


def pids(dirs: list[Path]) -> set[int]:
    """Every process in these cgroups and their children."""
    found: set[int] = set()
    for top in dirs:
        for root, _subdirs, _files in os.walk(top):
            try:
                text = Path(root, "cgroup.procs").read_text()
            except (FileNotFoundError, OSError):
                continue
            found.update(int(pid) for pid in text.split())
    return found


def kill(dirs: list[Path], timeout_s: float = 10.0) -> None:
    """SIGKILL every process in the cgroups until none is left."""
    deadline = time.monotonic() + timeout_s
    while left := pids(dirs):
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise TierkitError(f"lab: processes {sorted(left)[:5]} survive SIGKILL in "
                               f"{dirs[0]}; check `ps -o pid,stat,cmd -p {sorted(left)[0]}`")
        time.sleep(0.02)


def remove(dirs: list[Path]) -> None:
    """Remove the (empty) cgroups, innermost first."""
    for top in dirs:
        if not top.exists():
            continue
        for root, _subdirs, _files in sorted(os.walk(top), key=lambda w: -len(Path(w[0]).parts)):
            for attempt in range(50):
                try:
                    os.rmdir(root)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while the last killed tasks are released
                    time.sleep(0.02)


def memory_bytes(dirs: list[Path]) -> int:
    """Proportional set size (PSS) of every process in the cgroups: shared pages split fairly."""
    total = 0
    for pid in pids(dirs):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        total += sum(int(line.split()[1]) * 1024 for line in rollup.splitlines()
                     if line.startswith("Pss:"))
    return total
