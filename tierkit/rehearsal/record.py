"""The rehearsal's record, `.tierkit/<stack>/rehearsal.json` (0600): the part of a Pulumi state
the rehearsal keeps for the local commands `tierkit up` ran without the Pulumi CLI.

Per command: a salted hash of its inputs (secrets included, only the hash written), its outputs
(stdout/stderr; the secret ones sealed with tierkit/rehearsal/sealed.py's key, which lives outside
the project), its delete and what that delete runs with (secret environment values never written),
and its dependencies. The next `up` leaves a command whose inputs hash matches alone and answers
with its recorded outputs; `tierkit down` runs the deletes. Not a Pulumi state: local commands
only, no refresh, no import."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from pydantic import BaseModel, Field

from tierkit.errors import TierkitError
from tierkit.paths import StackPaths

RECORD_ABOUT = (
    "tierkit rehearsal record: the local commands `tierkit up` ran for this stack without the Pulumi "
    "CLI, with a salted hash of each one's inputs and its outputs (secret outputs encrypted with the "
    "key in ~/.local/state/tierkit/rehearsal.key; secret environment values never written), so that "
    "the next `up` leaves unchanged commands alone and `tierkit down` can run their deletes. Not a "
    "Pulumi state."
)


def record_path(root: Path, stack: str) -> Path:
    return StackPaths(root, stack).rehearsal_record


class RecordedCommand(BaseModel):
    urn: str
    name: str
    delete: str | None
    dir: str | None
    interpreter: list[str] | None
    environment: dict[str, str] = Field(description="non-secret variables only")
    secret_environment: list[str] = Field(description="names of secret variables; values are never written")
    stdout: str | None = Field(description="the command's stdout, `fernet:...` when secret; None: not kept")
    stderr: str | None = Field(description="the command's stderr, `fernet:...` when secret; None: not kept")
    inputs_hash: str | None = Field(None, description="salted sha256 of every input; None (an older record): run again in place")
    dependencies: list[str]
    created: str


class Record(BaseModel):
    about: str = RECORD_ABOUT
    stack: str
    salt: str = Field(default_factory=lambda: secrets.token_hex(16), description="for the inputs hashes")
    commands: list[RecordedCommand] = Field(default_factory=list)


class RecordStore:
    """The record file, rewritten atomically after every change (0600); gone when empty."""

    def __init__(self, path: Path, stack: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.record = self.load(path) or Record(stack=stack)

    @staticmethod
    def load(path: Path) -> Record | None:
        try:
            return Record.model_validate_json(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise TierkitError(f"{path}: not a rehearsal record ({str(exc).splitlines()[0]}); move it aside and run down by hand") from None

    def get(self, urn: str) -> RecordedCommand | None:
        with self._lock:
            return next((c for c in self.record.commands if c.urn == urn), None)

    def put(self, entry: RecordedCommand) -> None:
        with self._lock:
            kept = [c for c in self.record.commands if c.urn != entry.urn]
            self.record = self.record.model_copy(update={"commands": [*kept, entry]})
            self._write()

    def drop(self, urn: str) -> None:
        with self._lock:
            kept = [c for c in self.record.commands if c.urn != urn]
            self.record = self.record.model_copy(update={"commands": kept})
            self._write()

    def _write(self) -> None:
        if not self.record.commands:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.record.model_dump_json(indent=2) + "\n")
        tmp.replace(self.path)
