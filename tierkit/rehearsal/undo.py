"""Running recorded deletes: one command's (the old one of a replacement) or a set of them,
dependents first (`tierkit down`, and the commands an `up` no longer makes)."""

from __future__ import annotations

from tierkit.errors import TierkitError
from tierkit.rehearsal.execute import CommandFailed, CommandResult, Log, execute
from tierkit.rehearsal.record import RecordedCommand, RecordStore
from tierkit.rehearsal.schedule import dependents_first
from tierkit.rehearsal.sealed import open_text


def delete_one(entry: RecordedCommand, log: Log) -> CommandResult:
    """Run a recorded command's delete with its recorded outputs in PULUMI_COMMAND_STDOUT/STDERR,
    as pulumi-command's local provider does."""
    env = dict(entry.environment)
    stdout, stderr = open_text(entry.stdout), open_text(entry.stderr)
    if stdout:
        env["PULUMI_COMMAND_STDOUT"] = stdout
    if stderr:
        env["PULUMI_COMMAND_STDERR"] = stderr
    log(f"- {entry.name}: deleting")
    if not entry.delete:
        return CommandResult("", "", 0.0)
    return execute(entry.name, entry.delete, interpreter=entry.interpreter, directory=entry.dir,
                   environment=env, stdin=None, logging="stdoutAndStderr", log=log)


def delete_recorded(store: RecordStore, urns: set[str], log: Log) -> list[str]:
    """Run the recorded deletes of `urns`: a command only after everything recorded that depends
    on it is gone, independent ones in parallel; each one leaves the record as it goes. A failure
    stops the scheduling and keeps the rest recorded (TierkitError, exit 1). Returns the names
    deleted."""
    entries = {c.urn: c for c in store.record.commands if c.urn in urns}
    deleted: list[str] = []

    def done(urn: str, result: CommandResult) -> None:
        store.drop(urn)
        deleted.append(entries[urn].name)
        log(f"= {entries[urn].name}: deleted in {result.seconds:.1f} s")

    failures = dependents_first({u: e.dependencies for u, e in entries.items()},
                                lambda urn: delete_one(entries[urn], log), done, CommandFailed)
    if failures:
        raise TierkitError(*[f"{f.name}: delete failed with exit {f.code}; fix it and run `tierkit down` again"
                             for f in failures if isinstance(f, CommandFailed)], exit_code=1)
    return deleted
