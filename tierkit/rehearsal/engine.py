"""`up` and `down` without the Pulumi CLI.

`up` runs the program twice under the mock runtime: a preview that executes nothing, lists the
Command resources and refuses the stack when any other custom resource or an invoke appears (a
cloud server needs the Pulumi CLI); then a run in which each Command whose inputs changed since
the record is created (replacing the recorded one), an unchanged one answers with its recorded
outputs, and recorded commands the program no longer makes are deleted. `down` runs the recorded
deletes, dependents first."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tierkit.errors import TierkitError
from tierkit.rehearsal.config import load_stack_config
from tierkit.rehearsal.execute import CommandFailed, CommandResult, Log
from tierkit.rehearsal.record import RecordStore, record_path
from tierkit.rehearsal.runner import COMMAND, CommandRunner, RehearsalRefused
from tierkit.rehearsal.runtime import Export, ProgramRun, run_program
from tierkit.rehearsal.undo import delete_recorded

# Failures the rehearsal reports itself, once (see run_program's `reported`); TierkitError: the
# program's own refusals (a changed host key, say), reported by `_failure`.
REPORTED = (CommandFailed, RehearsalRefused, TierkitError)


@dataclass
class UpResult:
    exports: dict[str, Export]
    ran: list[tuple[str, CommandResult]]
    unchanged: list[str]
    seconds: float


@dataclass
class Trace:
    """What an up planned and ran, filled in as it goes, so a failed up still reports its steps:
    `ran` holds (command, seconds, why it failed or "")."""

    planned: list[str] = field(default_factory=list)
    ran: list[tuple[str, float, str]] = field(default_factory=list)

    def fill(self, runner: CommandRunner) -> None:
        self.ran = [(name, result.seconds, "") for name, result in runner.ran]
        self.ran += [(f.name, f.seconds, f"command failed with exit {f.code}") for f in runner.failures]


@dataclass
class DownResult:
    deleted: list[str]
    seconds: float


def refusal(what: str) -> TierkitError:
    return TierkitError(f"{what} needs the Pulumi CLI; rehearsal runs lab and baremetal stacks")


def _failure(run: ProgramRun, runner: CommandRunner) -> TierkitError:
    if isinstance(run.error, TierkitError):
        return run.error
    if runner.failures:
        lines = []
        for f in runner.failures:
            lines.append(f"{f.name}: command failed with exit {f.code}" + (f" ({f.tail.splitlines()[-1]})" if f.tail else ""))
        return TierkitError(*lines, exit_code=1)
    if isinstance(run.error, RehearsalRefused):
        return refusal(f"resource {run.error}")
    return TierkitError(f"program: {type(run.error).__name__}: {run.error}; see the lines above", exit_code=1)


def up(program: Callable[[], None], root: Path, stack: str, secret_env: dict[str, str], log: Log,
       trace: Trace | None = None, *, refresh: bool = False) -> UpResult:
    """Preview (refusing cloud resources), then run each Command whose inputs changed since the
    record (replacing the old one), and delete recorded commands the program no longer makes;
    `trace` (when given) learns the plan and every command run, failed ones too. `refresh`: the
    unchanged commands run again too (in place, nothing deleted)."""
    trace = trace if trace is not None else Trace()
    started = time.monotonic()
    cfg = load_stack_config(root, stack, secret_env)
    for note in cfg.notes:
        log(f"config {note}")
    preview_runner = CommandRunner(execute=False, log=log)
    preview = run_program(program, preview_runner, project=cfg.project, stack=stack, config=cfg.config,
                          secret_keys=cfg.secret_keys, preview=True, reported=REPORTED)
    # Refusals first: a cloud program may fail later in preview on invokes the rehearsal cannot answer.
    foreign = [t for t, _, custom in preview.constructed if custom and t != COMMAND]
    if foreign:
        raise refusal(f"resource {foreign[0]}")
    if preview_runner.invoked:
        raise refusal(f"invoke {preview_runner.invoked[0]}")
    if preview.error is not None:
        raise _failure(preview, preview_runner)
    trace.planned = [r.name for r in preview_runner.planned]
    names = ", ".join(trace.planned)
    store = RecordStore(record_path(root, stack), stack)
    log(f"plan: {len(preview_runner.planned)} commands ({names}); " + (
        "--refresh: every one runs" if refresh else f"those whose inputs match {store.path.name} stay as they are"))
    runner = CommandRunner(execute=True, log=log, store=store, refresh=refresh)
    run = run_program(program, runner, project=cfg.project, stack=stack, config=cfg.config,
                      secret_keys=cfg.secret_keys, preview=False, reported=REPORTED)
    runner.wait_idle()
    trace.fill(runner)
    if run.error is not None:
        raise _failure(run, runner)
    registered = {r.urn for r in run.registrations}
    stale = {c.urn for c in store.record.commands if c.urn not in registered}
    if stale:
        log(f"- {len(stale)} recorded command(s) the program no longer makes: deleting them")
        delete_recorded(store, stale, log)
    return UpResult(run.exports, runner.ran, runner.unchanged, time.monotonic() - started)


def down(root: Path, stack: str, log: Log) -> DownResult:
    """Run every recorded delete, dependents first (undo.delete_recorded)."""
    started = time.monotonic()
    path = record_path(root, stack)
    store = RecordStore(path, stack)
    if not store.record.commands:
        log(f"nothing recorded in {path}: nothing to delete")
        return DownResult([], time.monotonic() - started)
    deleted = delete_recorded(store, {c.urn for c in store.record.commands}, log)
    for directory in (path.parent, path.parent.parent):  # .tierkit/<stack>, then .tierkit
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return DownResult(deleted, time.monotonic() - started)
