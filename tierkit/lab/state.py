"""Where a lab keeps its state, and the record of what it made (`lab.json`).

Everything a lab makes on disk lives under `<root>/<name>/` (root: $TIERKIT_LAB_DIR, else
/var/lib/tierkit/labs): the client key, known_hosts, hosts.json, and per host its overlay
(upper, work, the merged root) and console log. The record is written before anything else is
made, so `lab down` finds what a crashed `lab up` left.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tierkit.errors import TierkitError

ROOT_ENV = "TIERKIT_LAB_DIR"
DEFAULT_ROOT = Path("/var/lib/tierkit/labs")
NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*")
NAME_MAX = 20


def labs_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def share_dir() -> Path:
    """The machine-wide directory every host binds at /opt/tierkit (tierkit.lab.share)."""
    return labs_root().parent / "lab-share"


def check_name(name: str, field: str = "--name") -> str:
    """Lab names: lower-case words joined by hyphens, no word starting with a digit, so a host
    name (`<lab>-<n>`) always tells its lab."""
    if len(name) > NAME_MAX or not NAME.fullmatch(name):
        raise TierkitError(f"{field}: {name!r} is not a lab name; use up to {NAME_MAX} lower-case "
                           f"letters and digits in hyphenated words (e.g. demo, tp-test)")
    return name


def host_name(lab: str, index: int) -> str:
    return f"{lab}-{index}"


def lab_of_host(host: str) -> tuple[str, int]:
    """('demo', 2) for host 'demo-2', or a one-line error."""
    lab, _, index = host.rpartition("-")
    if not index.isdigit() or not lab:
        raise TierkitError(f"HOST: {host!r} is not a lab host name (<lab>-<n>, e.g. demo-1); "
                           f"see `tierkit lab status`")
    return check_name(lab, "HOST"), int(index)


def lab_dir(name: str) -> Path:
    return labs_root() / name


def host_dir(lab: str, host: str) -> Path:
    return lab_dir(lab) / "hosts" / host


class HostRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    index: int
    address: str
    mac: str


class LabRecord(BaseModel):
    """What `lab up` was asked for and what it made."""

    model_config = ConfigDict(extra="forbid")

    name: str
    subnet: str
    image: str  # the root filesystem every host's overlay has below
    gpu: str
    gpus_per_host: int
    topology: str
    topology_text: str | None = None
    faults: list[str] = []
    hosts: list[HostRecord]
    ready: bool = False  # every host booted and answered SSH

    def settings(self) -> tuple[object, ...]:
        """What must match for a second `lab up` to be the same lab."""
        return settings(len(self.hosts), self.gpu, self.gpus_per_host, self.topology,
                        self.topology_text, self.faults)


def settings(hosts: int, gpu: str, gpus_per_host: int, topology: str, topology_text: str | None,
             faults: list[str]) -> tuple[object, ...]:
    """A lab's settings as `lab up` compares them (a topology file by its content)."""
    return (hosts, gpu, gpus_per_host, topology_text or topology, sorted(faults))


def record_path(name: str) -> Path:
    return lab_dir(name) / "lab.json"


def load(name: str) -> LabRecord | None:
    """The lab's record, or None when there is none (or only a torn one)."""
    try:
        return LabRecord.model_validate_json(record_path(name).read_text())
    except (FileNotFoundError, ValueError):
        return None


def save(record: LabRecord) -> None:
    path = record_path(record.name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)


def names() -> list[str]:
    """Every lab with a directory on this machine."""
    root = labs_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


@contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold the lab's lock (`<root>/.<name>.lock`, outside the directory `down` removes)."""
    root = labs_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
