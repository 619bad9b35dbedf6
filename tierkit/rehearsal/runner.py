"""The rehearsal's backend: what registering a resource does when the rehearsal runs a program.

In a preview it lists the `command:local:Command` resources and runs nothing; in a run, when the
SDK registers a Command (so in dependency order, independent ones in parallel on the SDK's thread
pool), it compares the Command's inputs with the record: unchanged, the recorded outputs answer
and nothing runs (with `refresh`, it runs again in place: tierkit's creates are idempotent checks
that repair drift); changed, the Command is replaced (its new create, then the old one's delete, or
the old delete first with `delete_before_replace`); new, its create runs. Each run is recorded.
Component resources pass through; any other custom resource, and any invoke, is refused in a
run (a cloud resource needs the Pulumi CLI)."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tierkit.errors import TierkitError
from tierkit.rehearsal.execute import CommandFailed, CommandResult, Log, execute
from tierkit.rehearsal.record import RecordedCommand, RecordStore
from tierkit.rehearsal.runtime import Backend, Registration, has_secret, is_sealed, reveal
from tierkit.rehearsal.sealed import key_path, open_text, seal_text
from tierkit.rehearsal.undo import delete_one

COMMAND = "command:local:Command"


class RehearsalRefused(Exception):
    """A resource type or invoke (its token is the message) that only the Pulumi CLI can run."""


def _environment(reg: Registration) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(everything to run with, the non-secret part, the secret names)."""
    raw = reg.inputs.get("environment") or {}
    if is_sealed(raw):
        plain = reveal(raw)
        return plain, {}, sorted(plain)
    public = {k: v for k, v in raw.items() if not has_secret(v)}
    return reveal(raw), public, sorted(k for k in raw if k not in public)


@dataclass
class CommandRunner(Backend):
    """Runs (or, in preview, lists) Command resources; refuses any other custom resource."""

    execute: bool
    log: Log
    store: RecordStore | None = None
    refresh: bool = False  # run unchanged commands again instead of taking their recorded outputs
    planned: list[Registration] = field(default_factory=list)
    failures: list[CommandFailed] = field(default_factory=list)
    ran: list[tuple[str, CommandResult]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    invoked: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0

    def wait_idle(self) -> None:
        """Block until no command runs (a failure ends the program run while others still do)."""
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0)

    def invoke(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.invoked.append(token)
        if self.execute:
            raise RehearsalRefused(token)
        return {}

    def create(self, reg: Registration) -> tuple[str, dict[str, Any]]:
        if not reg.custom:
            return "", {}
        if reg.type != COMMAND:  # the preview lists it (up() refuses the stack); a run never gets here
            if self.execute:
                raise RehearsalRefused(reg.type)
            return "", dict(reg.inputs)
        if not self.execute:
            with self._lock:
                self.planned.append(reg)
            return "", dict(reg.inputs)
        with self._lock:
            self._active += 1
        try:
            return self._run(reg)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _run(self, reg: Registration) -> tuple[str, dict[str, Any]]:
        rid = hashlib.sha256(reg.urn.encode()).hexdigest()[:16]
        old = self.store.get(reg.urn) if self.store is not None else None
        digest = inputs_hash(reg, self.store.record.salt) if self.store is not None else None
        # A record written before inputs were hashed (None) runs its command again in place.
        changed = old is not None and old.inputs_hash not in (None, digest)
        if old is not None and old.inputs_hash == digest:
            stdout, stderr = open_text(old.stdout), open_text(old.stderr)
            if stdout is None:  # running it again would trust what the record holds (pinned keys) anew
                raise TierkitError(
                    f"{reg.name}: its recorded secret outputs do not open with {key_path()} (not the key that sealed "
                    f"them); put that key there (or point $XDG_STATE_HOME at it), as Pulumi needs the stack's "
                    f"passphrase", exit_code=1)
            if self.refresh:
                self.log(f"+ {reg.name}: unchanged; --refresh runs it again (it checks the servers and repairs drift)")
            else:
                self.log(f"= {reg.name}: unchanged since {old.created} (its recorded outputs stand)")
                with self._lock:
                    self.unchanged.append(reg.name)
                return rid, {**reg.inputs, "stdout": stdout, "stderr": stderr or ""}
        if old is not None and changed and reg.delete_before_replace:
            self.log(f"- {reg.name}: inputs changed; deleting the old one before creating (delete_before_replace)")
            self._delete_old(old)
        env, public_env, secret_names = _environment(reg)
        create = reg.plain("create")
        self.log(f"+ {reg.name}: running")
        result = CommandResult("", "", 0.0)
        if create:
            try:
                result = execute(
                    reg.name,
                    create,
                    interpreter=reg.plain("interpreter"),
                    directory=reg.plain("dir"),
                    environment=env,
                    stdin=reg.plain("stdin"),
                    logging=str(reg.plain("logging", "stdoutAndStderr")),
                    log=self.log,
                )
            except CommandFailed as exc:
                with self._lock:
                    self.failures.append(exc)
                self.log(f"x {reg.name}: failed (exit {exc.code})")
                raise
        self.log(f"= {reg.name}: done in {result.seconds:.1f} s")
        if old is not None and changed and not reg.delete_before_replace:
            self.log(f"- {reg.name}: replaced; deleting the old one")
            self._delete_old(old)
        if self.store is not None:
            self.store.put(
                RecordedCommand(
                    urn=reg.urn,
                    name=reg.name,
                    delete=reg.plain("delete"),
                    dir=reg.plain("dir"),
                    interpreter=reg.plain("interpreter"),
                    environment=public_env,
                    secret_environment=secret_names,
                    stdout=seal_text(result.stdout) if "stdout" in reg.secret_outputs else result.stdout,
                    stderr=seal_text(result.stderr) if "stderr" in reg.secret_outputs else result.stderr,
                    inputs_hash=digest,
                    dependencies=reg.dependencies,
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                )
            )
        with self._lock:
            self.ran.append((reg.name, result))
        return rid, {**reg.inputs, "stdout": result.stdout, "stderr": result.stderr}

    def _delete_old(self, old: RecordedCommand) -> None:
        try:
            delete_one(old, self.log)
        except CommandFailed as exc:
            with self._lock:
                self.failures.append(exc)
            self.log(f"x {old.name}: the old one's delete failed (exit {exc.code})")
            raise


def inputs_hash(reg: Registration, salt: str) -> str:
    """Salted sha256 of a command's inputs, secrets included (only the hash is written)."""
    canonical = json.dumps(reveal(reg.inputs), sort_keys=True, default=str)
    return hashlib.sha256(f"{salt}\0{canonical}".encode()).hexdigest()
