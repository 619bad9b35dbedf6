"""Run a playbook through ansible-runner: inside the hosts' network namespace when they have one,
streaming each host's task results, ending with a recap per host and every failure named.

`run_playbook(...)` returns a `RunResult`: `recap` (per host: ok, changed, failed, unreachable,
skipped, rescued, ignored, as Ansible's PLAY RECAP counts them), `failures` (host, task,
message) and `ok`. Secrets travel as extra vars in a file (mode 0600) in a private directory
(mode 0700) that is deleted after the run: never on a command line, never in the inventory files.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from rich.markup import escape

from tierkit import netns
from tierkit.console import console
from tierkit.errors import TierkitError
from tierkit.hosts import Host

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = PROJECT_ROOT / "playbooks"
ROLES = PROJECT_ROOT / "roles"

# Stats keys of the playbook_on_stats event -> RunResult field names.
_STATS = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable",
          "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}


class HostRecap(BaseModel):
    """One line of Ansible's PLAY RECAP."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


class TaskFailure(BaseModel):
    host: str
    task: str
    message: str


class PlayOutcome(BaseModel):
    """One play of the run: how long it took and what failed in it."""

    name: str
    seconds: float
    failures: list[TaskFailure] = Field(default_factory=list)


class GateOutcome(BaseModel):
    """One verification gate on one host: an `ansible.builtin.assert` task's verdict."""

    play: str
    task: str
    host: str
    passed: bool
    message: str


class RunResult(BaseModel):
    playbook: str
    log: str | None = None  # ansible-playbook's full output, when kept
    rc: int
    status: str
    elapsed_s: float
    recap: dict[str, HostRecap] = Field(default_factory=dict)
    failures: list[TaskFailure] = Field(default_factory=list)
    plays: list[PlayOutcome] = Field(default_factory=list)
    gates: list[GateOutcome] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failures and all(
            r.failed == 0 and r.unreachable == 0 for r in self.recap.values()
        )


def failure_messages(result: dict[str, Any]) -> list[str]:
    """One line per failed item of a looped task (a loop's own msg only says that items failed),
    else the task's one line."""
    items = result.get("results")
    if isinstance(items, list):
        messages = [failure_message(i) for i in items if isinstance(i, dict) and i.get("failed")]
        if messages:
            return messages
    return [failure_message(result)]


def failure_message(result: dict[str, Any]) -> str:
    """The most telling line of a failed task's result (assert and fail messages first)."""
    if result.get("censored"):
        return str(result["censored"])
    for key in ("msg", "reason", "stderr", "stdout", "module_stderr", "module_stdout"):
        value = result.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.strip().split())
    items = result.get("results")
    if isinstance(items, list):
        messages = [failure_message(i) for i in items if isinstance(i, dict) and i.get("failed")]
        if messages:
            return "; ".join(messages)
    return "failed (no message)"


# The task action whose verdicts are the deploy's verification gates (topology, NCCL, driver).
GATE_ACTION = "ansible.builtin.assert"


class EventCollector:
    """Turns ansible-runner events into progress lines, failures, per-play times, the gates'
    verdicts and the recap."""

    def __init__(self, show: Callable[[str], None] | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.show = show
        self.clock = clock
        self.failures: list[TaskFailure] = []
        self.recap: dict[str, HostRecap] = {}
        self.plays: list[PlayOutcome] = []
        self.gates: list[GateOutcome] = []
        self._play: tuple[str, float, int] | None = None  # name, start, failures before it

    def finish(self) -> None:
        """Close the play in progress (a run that ends without its recap still reports it)."""
        if self._play is not None:
            name, start, before = self._play
            self.plays.append(PlayOutcome(name=name, seconds=round(self.clock() - start, 3),
                                          failures=self.failures[before:]))
            self._play = None

    def _gate(self, data: dict[str, Any], host: str, passed: bool, message: str) -> None:
        if (data.get("resolved_action") or data.get("task_action")) == GATE_ACTION:
            self.gates.append(GateOutcome(play=data.get("play") or "", task=data.get("task") or "", host=host,
                                          passed=passed, message=message))

    def _say(self, line: str) -> None:
        if self.show is not None:
            self.show(line)

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host") or data.get("remote_addr") or "?"
        task = data.get("task") or ""
        if kind == "runner_on_start":
            # A host that starts another task after a failure had it rescued by a block.
            self.failures = [f for f in self.failures if f.host != host]
        elif kind == "playbook_on_play_start":
            self.finish()
            self._play = (data.get("play", ""), self.clock(), len(self.failures))
            self._say(f"[bold]PLAY[/] {escape(data.get('play', ''))}")
        elif kind == "runner_on_ok":
            changed = bool((data.get("res") or {}).get("changed"))
            self._gate(data, host, True, str((data.get("res") or {}).get("msg") or "passed"))
            self._say(f"  {escape(host):<14} {'[yellow]changed[/]' if changed else '[green]ok[/]     '} {escape(task)}")
        elif kind == "runner_on_skipped":
            pass
        elif kind in ("runner_on_failed", "runner_on_unreachable"):
            if data.get("ignore_errors"):
                self._say(f"  {escape(host):<14} [dim]ignored[/] {escape(task)}")
                return True
            label = "unreachable" if kind == "runner_on_unreachable" else "failed"
            messages = failure_messages(data.get("res") or {})
            self._gate(data, host, False, "; ".join(messages))
            for message in messages:
                self.failures.append(TaskFailure(host=host, task=task, message=message))
                self._say(f"  {escape(host):<14} [red]{label}[/]  {escape(task)}: {escape(message)}")
        elif kind == "runner_retry":
            res = data.get("res") or {}
            self._say(f"  {escape(host):<14} [dim]retry[/]   {escape(task)} "
                      f"(attempt {res.get('attempts', '?')} of {res.get('retries', '?')})")
        elif kind == "playbook_on_stats":
            self.finish()
            for key, field in _STATS.items():
                for name, count in (data.get(key) or {}).items():
                    recap = self.recap.setdefault(name, HostRecap())
                    setattr(recap, field, int(count))
        return True


def ansible_playbook_binary() -> str:
    """ansible-playbook beside this Python (tierkit's venv), else on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.is_file():
        return str(beside)
    found = shutil.which("ansible-playbook")
    if found is None:
        raise TierkitError("ansible-playbook: not found; run tierkit from its venv (scripts/setup.sh)")
    return found


def playbook_path(name: str) -> Path:
    """`site` or a stage name (`drivers`, `nccl`, `topology`, `vllm`), or a path to a playbook."""
    candidate = Path(name)
    if candidate.suffix in (".yml", ".yaml") and candidate.is_file():
        return candidate.resolve()
    path = PLAYBOOKS / f"{name}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in PLAYBOOKS.glob("*.yml"))
        raise TierkitError(f"--playbook: no playbook {name!r}; use one of {', '.join(known)} or a path")
    return path


def write_extravars(private: Path, extravars: dict[str, Any]) -> None:
    """Extra vars (the secrets among them) as `env/extravars`, mode 0600 from its creation, in the
    run's 0700 private directory: ansible-runner passes that file as `-e @FILE`, so no value
    reaches ansible-playbook's command line (a dict given to ansible-runner would be written the
    same way by its dump_artifacts today, but as JSON on argv by its RunnerConfig otherwise)."""
    if not extravars:
        return
    env = private / "env"
    env.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(env / "extravars", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(extravars, f)


def run_playbook(
    playbook: str | Path,
    inventory: Path,
    hosts: list[Host],
    *,
    extravars: dict[str, Any] | None = None,
    show: Callable[[str], None] | None = console.print,
    log_file: Path | None = None,
) -> RunResult:
    """Run `playbook` against the rendered inventory file and return the recap and failures."""
    import ansible_runner

    path = playbook_path(str(playbook))
    space = netns.for_hosts(hosts)
    collector = EventCollector(show)
    private = Path(tempfile.mkdtemp(prefix="tierkit-ansible-"))  # mode 0700
    envvars = {
        "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROLES),
        "ANSIBLE_HOST_KEY_CHECKING": "True",  # ansible-runner turns it off unless told
        # SSH master connections live in this run's own directory: a ControlPersist socket left by
        # another run (another lab namespace with the same addresses) is never reused.
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(private / "cp"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }
    write_extravars(private, extravars or {})
    options: dict[str, Any] = {
        "private_data_dir": str(private),
        "inventory": str(inventory.resolve()),
        "envvars": envvars,
        "event_handler": collector,
        "quiet": True,
        "project_dir": str(PROJECT_ROOT),
    }
    command = netns.wrap([ansible_playbook_binary(), str(path)], space)
    options["binary"] = command.pop(0)
    options["cmdline"] = shlex.join(command)
    started = time.monotonic()
    try:
        runner = ansible_runner.run(**options)
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            stdout = runner.stdout.read() if runner.stdout else ""
            log_file.write_text(stdout)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    collector.finish()
    result = RunResult(
        playbook=path.name,
        log=str(log_file) if log_file is not None else None,
        rc=runner.rc if runner.rc is not None else -1,
        status=runner.status,
        elapsed_s=round(time.monotonic() - started, 1),
        recap=collector.recap,
        failures=collector.failures,
        plays=collector.plays,
        gates=collector.gates,
    )
    if log_file is not None:  # the result beside the log, for `tierkit up --junit` and the history
        result_file(log_file).write_text(result.model_dump_json(indent=2) + "\n")
    return result


def result_file(log_file: Path) -> Path:
    """Where a run's RunResult is kept: beside its log, as JSON."""
    return log_file.with_suffix(".json")


def print_summary(result: RunResult) -> None:
    """The recap per host, then one line per failure: host, task, message."""
    from rich.table import Table

    table = Table(title=f"{result.playbook}: {'ok' if result.ok else 'FAILED'} in {result.elapsed_s:.0f} s")
    for column in ("host", "ok", "changed", "failed", "unreachable", "skipped", "rescued"):
        table.add_column(column, justify="left" if column == "host" else "right")
    for host, r in sorted(result.recap.items()):
        table.add_row(host, str(r.ok), str(r.changed), str(r.failed), str(r.unreachable), str(r.skipped),
                      str(r.rescued))
    console.print(table)
    for f in result.failures:
        console.print(f"[red]failed[/] {escape(f.host)}: {escape(f.task)}: {escape(f.message)}", soft_wrap=True)
    if not result.ok and not result.failures:
        console.print(f"[red]failed[/] ansible-playbook exited {result.rc} ({result.status})")
    if not result.ok and result.log:
        console.print(f"full output: {escape(result.log)}", soft_wrap=True)
