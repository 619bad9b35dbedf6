"""`up` and `down` without the Pulumi CLI.

`up` runs the program twice under the mock runtime: a preview that executes nothing, lists the
Command resources and refuses the stack when any other custom resource or an invoke appears (a
cloud server needs the Pulumi CLI); then a run that executes every Command's create for real and
records it. `down` runs the recorded deletes, dependents first."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tierkit.errors import TierkitError
from tierkit.rehearsal.config import load_stack_config
from tierkit.rehearsal.execute import CommandFailed, CommandResult, Log, execute
from tierkit.rehearsal.record import RecordedCommand, RecordStore, record_path
from tierkit.rehearsal.runner import COMMAND, CommandRunner, RehearsalRefused
from tierkit.rehearsal.runtime import Export, ProgramRun, run_program
from tierkit.rehearsal.schedule import dependents_first

# Failures the rehearsal reports itself, once (see run_program's `reported`).
REPORTED = (CommandFailed, RehearsalRefused)


@dataclass
class UpResult:
    exports: dict[str, Export]
    ran: list[tuple[str, CommandResult]]
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
       trace: Trace | None = None) -> UpResult:
    """Preview (refusing cloud resources), then run every Command's create for real; `trace`
    (when given) learns the plan and every command run, failed ones too."""
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
    log(f"plan: {len(preview_runner.planned)} commands ({names}); every create runs (no state, no diffs)")
    runner = CommandRunner(execute=True, log=log, store=RecordStore(record_path(root, stack), stack))
    run = run_program(program, runner, project=cfg.project, stack=stack, config=cfg.config,
                      secret_keys=cfg.secret_keys, preview=False, reported=REPORTED)
    runner.wait_idle()
    trace.fill(runner)
    if run.error is not None:
        raise _failure(run, runner)
    return UpResult(run.exports, runner.ran, time.monotonic() - started)


def _delete_one(entry: RecordedCommand, log: Log) -> CommandResult:
    env = dict(entry.environment)
    if entry.stdout:
        env["PULUMI_COMMAND_STDOUT"] = entry.stdout
    if entry.stderr:
        env["PULUMI_COMMAND_STDERR"] = entry.stderr
    log(f"- {entry.name}: deleting")
    if not entry.delete:
        return CommandResult("", "", 0.0)
    return execute(entry.name, entry.delete, interpreter=entry.interpreter, directory=entry.dir,
                   environment=env, stdin=None, logging="stdoutAndStderr", log=log)


def down(root: Path, stack: str, log: Log) -> DownResult:
    """Run the recorded deletes: a command only after everything that depends on it is gone,
    independent ones in parallel. A failure stops the scheduling and keeps the rest recorded."""
    started = time.monotonic()
    path = record_path(root, stack)
    store = RecordStore(path, stack)
    entries = {c.urn: c for c in store.record.commands}
    if not entries:
        log(f"nothing recorded in {path}: nothing to delete")
        return DownResult([], time.monotonic() - started)
    deleted: list[str] = []

    def done(urn: str, result: CommandResult) -> None:
        store.drop(urn)
        deleted.append(entries[urn].name)
        log(f"= {entries[urn].name}: deleted in {result.seconds:.1f} s")

    failures = dependents_first({u: e.dependencies for u, e in entries.items()},
                                lambda urn: _delete_one(entries[urn], log), done, CommandFailed)
    if failures:
        raise TierkitError(*[f"{f.name}: delete failed with exit {f.code}; fix it and run `tierkit down` again"
                             for f in failures if isinstance(f, CommandFailed)], exit_code=1)
    for directory in (path.parent, path.parent.parent):  # .tierkit/<stack>, then .tierkit
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return DownResult(deleted, time.monotonic() - started)
