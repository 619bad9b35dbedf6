"""`tierkit up --stack single-gpu` end to end on the lab, without the Pulumi CLI (the rehearsal),
deployed once (from a copy of the project, since two tests change a role) for every test here,
which run in this order, each on what the one before left:

1. up from nothing: a lab host, the roles, real vLLM (on the CPU), and a smoke gate passed. An API
   key is set, so the secret's whole path is real: configure hands it to vLLM, calibrate and smoke
   authenticate with it, and it is never printed; vLLM refuses a request without it.
2. a second up leaves every command as recorded (vLLM keeps running, the pins stay).
3. the rehearsal's record plays the stack's Pulumi state, and nothing else on disk is needed:
   everything under `.tierkit/<stack>/` deleted but the record (as a fresh CI checkout would have
   it), a role changed, and `tierkit up` again. The lab and the readiness check stand as recorded,
   configure is replaced (delete first) and runs on the hosts and pinned keys it gets on stdin,
   against a known_hosts it rebuilds from them, changing nothing on the hosts, and smoke passes.
4. a hung engine is restarted by the watchdog.
5. a record whose pinned key is not the host's: configure refuses the host, nothing re-pins it.
6. `tierkit down` leaves nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tierkit.lab.drills import ENGINE_CORE
from tierkit.paths import StackPaths
from tierkit.rehearsal.record import RecordStore
from tierkit.rehearsal.sealed import open_text, seal_text
from up_support import (
    CHANGED_TASK, ROOT, Up, down_leaves_nothing, on_host, report_timing, tierkit, up, vllm_main_pid,
)

pytestmark = pytest.mark.lab

STACK = "single-gpu"
LAB = "tksingle"  # not the shipped spec's lab name: a lab deployed from the repository stays untouched
API_KEY = "tk-e2e-2f6c1d9a7b"
ROLE_DEFAULTS = Path("roles") / "vllm" / "defaults" / "main.yml"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBpbm5lZC1rZXktb2YtYW5vdGhlci1zZXJ2ZXIhISE"
# The watchdog: 3 failed checks 10 s apart, each up to 5 s (roles/vllm/defaults/main.yml), then
# vLLM's stop; loading the tiny model again on the CPU takes about a minute.
WATCHDOG_LIMIT_S = 90
SERVE_AGAIN_LIMIT_S = 600


@dataclass
class Project:
    """A copy of the project (Pulumi.yaml, playbooks, roles, the single-gpu stack on lab LAB) with
    its own key for the record's secrets ($XDG_STATE_HOME)."""

    root: Path
    spec: dict[str, Any]
    env: dict[str, str]

    def tierkit(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return tierkit(*args, env=self.env, timeout=timeout, cwd=self.root)

    def up(self) -> Up:
        return up(STACK, self.env, cwd=self.root)

    @property
    def paths(self) -> StackPaths:
        return StackPaths(self.root, STACK)

    @property
    def state(self) -> Path:
        return self.paths.state_dir

    def record(self) -> dict[str, Any]:
        return json.loads(self.paths.rehearsal_record.read_text())

    def change_a_role(self, note: str) -> None:
        with (self.root / ROLE_DEFAULTS).open("a") as f:
            f.write(f"# {note}\n")  # a comment: the content hash changes, the role's behaviour does not


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "Pulumi.yaml", root)
    for d in ("playbooks", "roles"):
        shutil.copytree(ROOT / d, root / d, symlinks=True)
    spec = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{STACK}.yaml").read_text())
    spec["config"]["tierkit:tier"]["provider"]["name"] = LAB
    (root / "stacks").mkdir()
    (root / "stacks" / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(spec))
    xdg_state = str(root.parent / "xdg-state")
    p = Project(root, spec, {"PYTHONPATH": str(ROOT), "XDG_STATE_HOME": xdg_state, "TIERKIT_API_KEY": API_KEY})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", xdg_state)  # this process opens the record's secrets too
        p.tierkit("lab", "down", LAB, timeout=300)
        try:
            yield p
        finally:
            p.tierkit("down", "--stack", STACK, timeout=600)
            p.tierkit("lab", "down", LAB, timeout=300)


@pytest.fixture(scope="module")
def first(project: Project) -> Up:
    return project.up()


def lab_curl(*args: str, timeout: float = 60) -> str:
    """curl inside the lab's network; returns the HTTP status it printed."""
    return tierkit("lab", "exec", LAB, "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args,
                   timeout=timeout).stdout


def test_up_from_nothing_passes_its_gate(project: Project, first: Up) -> None:
    assert first.proc.returncode == 0, first.log[-3000:]
    assert first.log.splitlines()[0].startswith("tierkit up: rehearsal (no Pulumi CLI)")
    out = first.result
    assert out["engine"] == "rehearsal"
    outputs = out["outputs"]
    smoke = outputs["smoke"]
    assert smoke["passed"] is True and smoke["failed"] == 0
    assert smoke["completed"] == project.spec["config"]["tierkit:tier"]["smoke"]["requests"]
    assert "These figures come from a CPU rehearsal" in smoke["gate_source"]
    assert "These figures come from a CPU rehearsal" in first.log
    report = json.loads(project.paths.smoke_report.read_text())
    assert report["backend"] == "vllm" and report["model"] == "tiny-llama"
    host = outputs["hosts"][0]
    assert outputs["endpoint"] == f"http://{host['address']}:8000"
    assert host["known_hosts"] == str(project.paths.known_hosts)
    assert API_KEY not in first.proc.stdout + first.proc.stderr
    for path in project.state.rglob("*"):
        if path.is_file():
            assert API_KEY not in path.read_text(errors="replace"), path
    report_timing(STACK, "cold (no lab; image, wheelhouse and model cached)", first.seconds)


def test_vllm_requires_the_key(first: Up) -> None:
    base = first.result["outputs"]["endpoint"]
    without = lab_curl(f"{base}/v1/models")
    with_key = lab_curl("-H", f"Authorization: Bearer {API_KEY}", f"{base}/v1/models")
    assert (without, with_key) == ("401", "200"), first.result["outputs"]["hosts"][0]["name"]


def test_second_up_changes_nothing(project: Project, first: Up) -> None:
    host = first.result["outputs"]["hosts"][0]["name"]
    pid = vllm_main_pid(host)
    pinned = project.paths.known_hosts.read_text()
    second = project.up()
    assert second.proc.returncode == 0, second.log[-3000:]
    assert "ran 0 command(s) (none); 5 unchanged" in second.log, "the record stands for every command"
    assert vllm_main_pid(host) == pid, "vLLM was restarted"
    assert project.paths.known_hosts.read_text() == pinned
    assert second.result["outputs"]["smoke"]["passed"] is True  # the recorded verdict
    report_timing(STACK, "warm (second up)", second.seconds)


def lines(proc: subprocess.CompletedProcess[str], *prefixes: str) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.startswith(prefixes)]


def test_record_alone_carries_the_stack_through_a_role_change(project: Project, first: Up) -> None:
    # A fresh checkout: nothing under .tierkit/<stack>/ but the record.
    for path in project.state.iterdir():
        if path != project.paths.rehearsal_record:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    project.change_a_role("changed by test_up_single")
    started = time.monotonic()
    again = project.tierkit("up", "--stack", STACK)
    again_s = time.monotonic() - started
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    stood = lines(again, "= lab:", "= wait-ssh:")
    assert len(stood) == 2 and all("unchanged since" in line for line in stood), "they stand as recorded"
    assert "- configure: inputs changed; deleting the old one before creating (delete_before_replace)" in again.stdout
    assert "+ configure: running" in again.stdout and "+ smoke: running" in again.stdout
    assert "smoke: passed" in again.stdout
    assert not CHANGED_TASK.findall(again.stdout), "configure on configured hosts changed something"
    # The pins came from the record (Readiness's encrypted output) and are what Ansible checks.
    wait = next(c for c in project.record()["commands"] if c["name"] == "wait-ssh")
    assert wait["stdout"].startswith("fernet:")
    pinned = json.loads(open_text(wait["stdout"]) or "[]")
    cache = project.paths.inventory_dir / "known_hosts"
    assert cache.read_text().split()[1:] == pinned[0]["host_key"].split()
    hosts_yml = (project.paths.inventory_dir / "hosts.yml").read_text()
    assert f"UserKnownHostsFile={cache}" in hosts_yml and "StrictHostKeyChecking=yes" in hosts_yml
    report_timing(STACK, "after wiping all but the record and a role change", again_s)


def test_watchdog_restarts_a_hung_engine(first: Up) -> None:
    """The engine core stopped (SIGSTOP): /health stays 200, completions hang; the watchdog's
    failed completions (3 in a row, one every 10 s) restart vLLM, which then serves again."""
    host = first.result["outputs"]["hosts"][0]["name"]
    pid = vllm_main_pid(host)
    started = time.monotonic()
    on_host(host, f"kill -STOP $(pgrep --full '^{ENGINE_CORE}')")
    while vllm_main_pid(host) in (pid, 0):
        assert time.monotonic() - started < WATCHDOG_LIMIT_S, "the watchdog did not restart the hung vLLM"
        time.sleep(2)
    restarted_s = time.monotonic() - started
    log = on_host(host, "journalctl -t vllm-watchdog --no-pager -o cat")
    assert "answers /health but no completion (3 checks in a row): restarting vllm" in log, log
    base = first.result["outputs"]["endpoint"]
    body = json.dumps({"model": "tiny-llama", "prompt": "ok", "max_tokens": 1})
    while True:
        done = lab_curl("-m", "10", "-H", f"Authorization: Bearer {API_KEY}", "-H", "Content-Type: application/json",
                        "-d", body, f"{base}/v1/completions")
        if done == "200":
            break
        assert time.monotonic() - started < SERVE_AGAIN_LIMIT_S, f"vLLM does not serve again after the restart ({done})"
        time.sleep(5)
    print(f"watchdog: hung engine restarted after {restarted_s:.0f} s, serving again after {time.monotonic() - started:.0f} s")


def test_a_pin_that_is_not_the_hosts_key_is_refused(project: Project, first: Up) -> None:
    """The record's pinned key (as a tampered or stale state would carry) wins over the host:
    configure's SSH refuses the host, nothing re-pins it."""
    store = RecordStore(project.paths.rehearsal_record, STACK)
    wait = store.get(next(c["urn"] for c in project.record()["commands"] if c["name"] == "wait-ssh"))
    assert wait is not None
    hosts = json.loads(open_text(wait.stdout) or "[]")
    forged = [{**h, "host_key": OTHER_KEY} for h in hosts]
    store.put(wait.model_copy(update={"stdout": seal_text(json.dumps(forged))}))
    project.change_a_role("changed again by test_up_single")
    third = project.tierkit("up", "--stack", STACK, timeout=900)
    assert third.returncode == 1
    assert "= wait-ssh: unchanged since" in third.stdout
    assert "Host key verification failed" in third.stdout + third.stderr
    assert OTHER_KEY.split()[1] in (project.paths.inventory_dir / "known_hosts").read_text()


def test_down_leaves_nothing(project: Project, first: Up, find_leftovers: Callable[[str], list[str]]) -> None:
    """Every recorded delete runs (the failed replace above left configure's old entry recorded)."""
    proc = down_leaves_nothing(STACK, find_leftovers, project.root)
    assert proc.stderr.splitlines()[0].startswith("tierkit down: rehearsal (no Pulumi CLI)")
