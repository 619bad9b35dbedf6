"""The rehearsal's record plays the stack's Pulumi state, and nothing else on disk is needed: a lab
stack deployed from a copy of the project, then everything under `.tierkit/<stack>/` deleted but
the record (as a fresh CI checkout would have it), a role changed, and `tierkit up` again. The lab
and the readiness check stand as recorded, configure is replaced (delete first) and runs on the
hosts and pinned keys it gets on stdin, against a known_hosts it rebuilds from them, and smoke
passes. Then a record whose pinned key is not the host's: configure refuses the host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tierkit.paths import StackPaths
from tierkit.rehearsal.record import RecordStore
from tierkit.rehearsal.sealed import open_text, seal_text
from up_support import CHANGED_TASK

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
STACK = "state"
LAB = "tkstate"
ROLE_DEFAULTS = Path("roles") / "vllm" / "defaults" / "main.yml"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBpbm5lZC1rZXktb2YtYW5vdGhlci1zZXJ2ZXIhISE"


@dataclass
class Project:
    root: Path
    env: dict[str, str]

    def tierkit(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-W", "ignore", "-c", "from tierkit.cli import main; main()", *args],
                              cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)

    @property
    def state(self) -> Path:
        return StackPaths(self.root, STACK).state_dir

    @property
    def record_path(self) -> Path:
        return StackPaths(self.root, STACK).rehearsal_record

    def record(self) -> dict[str, Any]:
        return json.loads(self.record_path.read_text())

    def change_a_role(self, note: str) -> None:
        with (self.root / ROLE_DEFAULTS).open("a") as f:
            f.write(f"# {note}\n")  # a comment: the content hash changes, the role's behaviour does not


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "Pulumi.yaml", root)
    for d in ("playbooks", "roles"):
        shutil.copytree(ROOT / d, root / d, symlinks=True)
    spec = yaml.safe_load((ROOT / "stacks" / "Pulumi.single-gpu.yaml").read_text())
    spec["config"]["tierkit:tier"]["provider"]["name"] = LAB
    (root / "stacks").mkdir()
    (root / "stacks" / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(root.parent / "xdg-state"),
           "TIERKIT_API_KEY": "tk-state-7d1e0c"}
    p = Project(root, env)
    os.environ["XDG_STATE_HOME"] = env["XDG_STATE_HOME"]  # this process opens the record's secrets too
    p.tierkit("lab", "down", LAB, timeout=300)
    try:
        yield p
    finally:
        p.tierkit("down", "--stack", STACK, timeout=600)
        p.tierkit("lab", "down", LAB, timeout=300)


def lines(proc: subprocess.CompletedProcess[str], *prefixes: str) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.startswith(prefixes)]


def test_record_alone_carries_the_stack_through_a_role_change(project: Project) -> None:
    started = time.monotonic()
    first = project.tierkit("up", "--stack", STACK)
    first_s = time.monotonic() - started
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    # A fresh checkout: nothing under .tierkit/<stack>/ but the record.
    for path in project.state.iterdir():
        if path != project.record_path:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    project.change_a_role("changed by test_up_state")
    started = time.monotonic()
    second = project.tierkit("up", "--stack", STACK)
    second_s = time.monotonic() - started
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    stood = lines(second, "= lab:", "= wait-ssh:")
    assert len(stood) == 2 and all("unchanged since" in line for line in stood), "they stand as recorded"
    assert "- configure: inputs changed; deleting the old one before creating (delete_before_replace)" in second.stdout
    assert "+ configure: running" in second.stdout and "+ smoke: running" in second.stdout
    assert "smoke: passed" in second.stdout
    assert not CHANGED_TASK.findall(second.stdout), "configure on configured hosts changed something"
    # The pins came from the record (Readiness's encrypted output) and are what Ansible checks.
    wait = next(c for c in project.record()["commands"] if c["name"] == "wait-ssh")
    assert wait["stdout"].startswith("fernet:")
    pinned = json.loads(open_text(wait["stdout"]) or "[]")
    cache = project.state / "inventory" / "known_hosts"
    assert cache.read_text().split()[1:] == pinned[0]["host_key"].split()
    hosts_yml = (project.state / "inventory" / "hosts.yml").read_text()
    assert f"UserKnownHostsFile={cache}" in hosts_yml and "StrictHostKeyChecking=yes" in hosts_yml
    print(f"tierkit up --stack {STACK}: first {first_s:.1f} s; after the wipe and a role change {second_s:.1f} s")


def test_a_pin_that_is_not_the_hosts_key_is_refused(project: Project) -> None:
    """The record's pinned key (as a tampered or stale state would carry) wins over the host:
    configure's SSH refuses the host, nothing re-pins it."""
    store = RecordStore(project.record_path, STACK)
    wait = store.get(next(c["urn"] for c in project.record()["commands"] if c["name"] == "wait-ssh"))
    assert wait is not None
    hosts = json.loads(open_text(wait.stdout) or "[]")
    forged = [{**h, "host_key": OTHER_KEY} for h in hosts]
    store.put(wait.model_copy(update={"stdout": seal_text(json.dumps(forged))}))
    project.change_a_role("changed again by test_up_state")
    third = project.tierkit("up", "--stack", STACK, timeout=900)
    assert third.returncode == 1
    assert "= wait-ssh: unchanged since" in third.stdout
    assert "Host key verification failed" in third.stdout + third.stderr
    assert OTHER_KEY.split()[1] in (project.state / "inventory" / "known_hosts").read_text()
