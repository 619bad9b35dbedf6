"""Run the Pulumi program without the Pulumi CLI (DESIGN.md "Running the Pulumi program without ...").

The Pulumi CLI cannot be installed on tierkit's machines, so `tierkit up` falls back to this
rehearsal. It loads the stack's config, installs Pulumi's mock runtime with a monitor that records
the resource graph, and runs the real program twice:

1. a preview pass executes nothing: it lists the resources and refuses the stack when any custom
   resource is not a `command:local:Command` (a cloud server needs the Pulumi CLI);
2. the run pass executes each Command's `create` for real when the SDK registers it. The SDK
   registers a resource only once its inputs and dependencies have resolved, on a thread pool, so
   commands run in dependency order and independent ones in parallel. Component resources pass
   through.

Its record, `.tierkit/<stack>/rehearsal.json` (0600), plays the part of a Pulumi state for the
commands: each one's inputs (as a salted hash) and outputs, the secret ones encrypted (Fernet) with
a key kept outside the project (`$XDG_STATE_HOME/tierkit/rehearsal.key`, 0600), as Pulumi's
passphrase provider keeps secrets out of a state in plaintext. On the next `up` a command whose
inputs match its record does not run and answers with its recorded outputs, as Pulumi leaves an
unchanged resource alone; one whose inputs changed is replaced (the new create, then the old
delete; the old delete first for `delete_before_replace`); one the program no longer registers is
deleted. `tierkit down` runs the recorded deletes, dependents first. It is not a Pulumi state:
nothing but local commands, no refresh, no import.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await
from pydantic import BaseModel, Field

from tierkit import spec as tier_spec
from tierkit.errors import TierkitError
from tierkit.paths import StackPaths

COMMAND = "command:local:Command"
DEFAULT_INTERPRETER = ["/bin/sh", "-c"]
RECORD_ABOUT = (
    "tierkit rehearsal record: the local commands `tierkit up` ran for this stack without the Pulumi "
    "CLI, with a salted hash of each one's inputs and its outputs (secret outputs encrypted with the "
    "key in ~/.local/state/tierkit/rehearsal.key; secret environment values never written), so that "
    "the next `up` leaves unchanged commands alone and `tierkit down` can run their deletes. Not a "
    "Pulumi state."
)
Log = Callable[[str], None]

_SIG, _SECRET = rpc._special_sig_key, rpc._special_secret_sig


# ---------------------------------------------------------------------------------------------
# Secrets as the mock runtime carries them: {sig: secret-sig, "value": ...}.


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_SIG) == _SECRET


def seal(value: Any) -> Any:
    return value if is_sealed(value) else {_SIG: _SECRET, "value": value}


def reveal(value: Any) -> Any:
    """The plain value, every secret wrapper removed (for running a command, never for printing)."""
    if is_sealed(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def has_secret(value: Any) -> bool:
    if is_sealed(value):
        return True
    if isinstance(value, dict):
        return any(has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(has_secret(v) for v in value)
    return False


# ---------------------------------------------------------------------------------------------
# The monitor: Pulumi's mock monitor, plus the graph (parents, dependencies) and the engine's
# secret rules, which the plain mock monitor leaves out.


@dataclass
class Registration:
    """One resource as the program registered it."""

    urn: str
    type: str
    name: str
    parent: str | None
    dependencies: list[str]
    custom: bool
    inputs: dict[str, Any]
    secret_outputs: list[str]
    ignore_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False

    def plain(self, key: str, default: Any = None) -> Any:
        value = self.inputs.get(key)
        return default if value is None else reveal(value)


class Backend(mocks.Mocks):
    """Decides what registering a resource does (run it, record it, fake it). Subclass `create`."""

    def create(self, reg: Registration) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        # Only `Resource.get` lookups reach here (registrations go through RecordingMonitor).
        reg = Registration(args.name, args.typ, args.name, None, [], bool(args.custom), dict(args.inputs), [])
        return self.create(reg)

    def call(self, args: mocks.MockCallArgs) -> dict[str, Any]:
        return {}


def apply_secret_rules(reg: Registration, state: dict[str, Any]) -> dict[str, Any]:
    """As the Pulumi engine does: an output is secret when listed in additionalSecretOutputs or
    when the input of the same name was secret."""
    return {
        k: seal(v) if k in reg.secret_outputs or has_secret(reg.inputs.get(k)) else v
        for k, v in state.items()
    }


class RecordingMonitor(mocks.MockMonitor):
    """Pulumi's MockMonitor that keeps every registration (with parent and dependencies)."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self.backend = backend
        self.registrations: list[Registration] = []
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return resource_pb2.RegisterResourceResponse(urn=urn)
        _ensure_event_loop()
        reg = Registration(
            urn=urn,
            type=request.type,
            name=request.name,
            parent=request.parent or None,
            dependencies=list(request.dependencies),
            custom=bool(request.custom),
            inputs=rpc.deserialize_properties(request.object),
            secret_outputs=list(request.additionalSecretOutputs),
            ignore_changes=list(request.ignoreChanges),
            delete_before_replace=bool(request.deleteBeforeReplace),
        )
        with self._lock:
            self.registrations.append(reg)
        id_, state = self.backend.create(reg)
        state = apply_secret_rules(reg, state)
        obj = _sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = mocks.MockMonitor.ResourceRegistration(urn, id_, state)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=obj)


@dataclass
class Export:
    value: Any
    secret: bool
    known: bool


@dataclass
class ProgramRun:
    """What one run of the program registered (in registration order) and exported."""

    registrations: list[Registration]
    states: dict[str, dict[str, Any]]  # urn -> outputs, as the engine would keep them
    constructed: list[tuple[str, str, bool]]  # (type, name, custom) in the order the program built them
    exports: dict[str, Export]
    error: BaseException | None = None

    def by_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, name: str, *, component: bool = False) -> Registration:
        """The one custom resource (or, with component=True, component) called `name`."""
        found = [r for r in self.registrations if r.name == name and r.custom != component]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r}")
        return found[0]


def _quiet_reported(loop: Any, context: dict[str, Any]) -> None:
    """A failed command rejects every output that depended on it; the failure is reported once
    by the caller, so the event loop's "exception was never retrieved" noise is dropped."""
    if isinstance(context.get("exception"), (CommandFailed, RehearsalRefused, TierkitError)):
        return
    loop.default_exception_handler(context)


def run_program(
    program: Callable[[], None],
    backend: Backend,
    *,
    project: str,
    stack: str,
    config: dict[str, str],
    secret_keys: list[str] | None = None,
    preview: bool = False,
) -> ProgramRun:
    """Run a Pulumi program under the mock runtime; never raises for the program's own errors
    (they land in `ProgramRun.error`, after every started registration has finished)."""
    settings.ROOT.set(None)
    _ensure_event_loop().set_exception_handler(_quiet_reported)
    pulumi.runtime.set_all_config(dict(config), list(secret_keys or []))
    monitor = RecordingMonitor(backend)
    mocks.set_mocks(backend, project, stack, preview=preview, monitor=monitor)
    settings.SETTINGS.outputs.clear()
    constructed: list[tuple[str, str, bool]] = []

    def with_order() -> None:
        pulumi.runtime.register_stack_transformation(
            lambda a: constructed.append((a.type_, a.name, isinstance(a.resource, pulumi.CustomResource))) or None
        )
        program()

    error: BaseException | None = None
    try:
        _sync_await(run_pulumi_func(with_order))
    except Exception as exc:  # the program's or a resource's failure: reported by the caller
        error = exc
    exports: dict[str, Export] = {}
    root = settings.get_root_resource()
    if error is None and root is not None:
        for key, value in getattr(root, "outputs", {}).items():
            out = pulumi.Output.from_input(value)
            exports[key] = Export(
                _sync_await(out.future()), bool(_sync_await(out.is_secret())), bool(_sync_await(out.is_known()))
            )
    states = {urn: dict(r.state) for urn, r in monitor.get_registered_resources().items()}
    return ProgramRun(list(monitor.registrations), states, constructed, exports, error)


# ---------------------------------------------------------------------------------------------
# Running one command, as pulumi-command's local provider does.


@dataclass
class CommandResult:
    stdout: str
    stderr: str
    seconds: float


class CommandFailed(Exception):
    def __init__(self, name: str, code: int, tail: str) -> None:
        super().__init__(f"{name}: command exited {code}")
        self.name, self.code, self.tail = name, code, tail


def _pump(stream: Any, sink: list[str], show: Log | None, prefix: str) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        sink.append(line)
        if show is not None:
            show(f"{prefix}{line.rstrip()}")
    stream.close()


def execute(
    name: str,
    command: str,
    *,
    interpreter: list[str] | None,
    directory: str | None,
    environment: dict[str, str],
    stdin: str | None,
    logging: str,
    log: Log,
) -> CommandResult:
    """Run `interpreter + [command]`, stream its lines as `logging` allows, and capture both
    streams (trailing newline trimmed, as pulumi-command does). Raises CommandFailed."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [*(interpreter or DEFAULT_INTERPRETER), command],
        cwd=directory,
        env={**os.environ, **environment},
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out: list[str] = []
    err: list[str] = []
    show_out = log if logging in ("stdout", "stdoutAndStderr") else None
    show_err = log if logging in ("stderr", "stdoutAndStderr") else None
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, out, show_out, f"  {name} | "), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err, show_err, f"  {name} | "), daemon=True),
    ]
    for t in pumps:
        t.start()
    if stdin:
        assert proc.stdin is not None
        try:
            proc.stdin.write(stdin.encode())
        except BrokenPipeError:
            pass
        proc.stdin.close()
    code = proc.wait()
    for t in pumps:
        t.join()
    if code != 0:
        tail = "".join(err[-8:]).strip() if show_err is None else ""
        raise CommandFailed(name, code, tail)
    return CommandResult("".join(out).removesuffix("\n"), "".join(err).removesuffix("\n"), time.monotonic() - started)


# ---------------------------------------------------------------------------------------------
# Secret outputs in the record: encrypted with a key that lives outside the project.

SEALED_PREFIX = "fernet:"


def key_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "tierkit" / "rehearsal.key"


def seal_text(text: str) -> str:
    """`fernet:<token>`: `text` encrypted with this machine's rehearsal key (made on first use)."""
    from cryptography.fernet import Fernet

    path = key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
    return SEALED_PREFIX + Fernet(path.read_bytes()).encrypt(text.encode()).decode()


def open_text(value: str | None) -> str | None:
    """A recorded output as text; None when it is sealed and this machine's key cannot open it."""
    if value is None or not value.startswith(SEALED_PREFIX):
        return value
    from cryptography.fernet import Fernet, InvalidToken

    try:
        return Fernet(key_path().read_bytes()).decrypt(value.removeprefix(SEALED_PREFIX).encode()).decode()
    except (OSError, ValueError, InvalidToken):
        return None


# ---------------------------------------------------------------------------------------------
# The record `tierkit down` reads.


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
    secret_outputs: list[str] = Field(default_factory=list, description="which outputs the program marked secret")
    inputs_hash: str | None = Field(None, description="salted sha256 of every input; None: always re-run")
    delete_before_replace: bool = False
    dependencies: list[str]
    created: str


class Record(BaseModel):
    about: str = RECORD_ABOUT
    stack: str
    salt: str = Field(default_factory=lambda: secrets.token_hex(16), description="for the inputs hashes")
    commands: list[RecordedCommand] = Field(default_factory=list)


class RecordStore:
    """`.tierkit/<stack>/rehearsal.json`, rewritten atomically after every change (0600)."""

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


def _environment(reg: Registration) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(everything to run with, the non-secret part, the secret names)."""
    raw = reg.inputs.get("environment") or {}
    if is_sealed(raw):
        plain = reveal(raw)
        return plain, {}, sorted(plain)
    public = {k: v for k, v in raw.items() if not has_secret(v)}
    return reveal(raw), public, sorted(k for k in raw if k not in public)


# ---------------------------------------------------------------------------------------------
# The rehearsal's backend.


class RehearsalRefused(Exception):
    pass


@dataclass
class CommandRunner(Backend):
    """Runs (or, in preview, lists) Command resources; refuses any other custom resource."""

    execute: bool
    log: Log
    store: RecordStore | None = None
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

    def call(self, args: mocks.MockCallArgs) -> dict[str, Any]:
        with self._lock:
            self.invoked.append(args.token)
        if self.execute:
            raise RehearsalRefused(args.token)
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
        if old is not None and old.inputs_hash == digest:
            stdout, stderr = open_text(old.stdout), open_text(old.stderr)
            if stdout is not None:
                self.log(f"= {reg.name}: unchanged since {old.created} (its recorded outputs stand)")
                with self._lock:
                    self.unchanged.append(reg.name)
                return rid, {**reg.inputs, "stdout": stdout, "stderr": stderr or ""}
            self.log(f"+ {reg.name}: unchanged, but its recorded outputs cannot be opened ({key_path()}); running it")
        if old is not None and reg.delete_before_replace:
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
        if old is not None and not reg.delete_before_replace:
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
                    secret_outputs=sorted(set(reg.secret_outputs) & {"stdout", "stderr"}),
                    inputs_hash=digest,
                    delete_before_replace=reg.delete_before_replace,
                    dependencies=reg.dependencies,
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                )
            )
        with self._lock:
            self.ran.append((reg.name, result))
        return rid, {**reg.inputs, "stdout": result.stdout, "stderr": result.stderr}

    def _delete_old(self, old: RecordedCommand) -> None:
        try:
            _delete_one(old, self.log)
        except CommandFailed as exc:
            with self._lock:
                self.failures.append(exc)
            self.log(f"x {old.name}: the old one's delete failed (exit {exc.code})")
            raise


def inputs_hash(reg: Registration, salt: str) -> str:
    """Salted sha256 of a command's inputs, secrets included (only the hash is written)."""
    canonical = json.dumps(reveal(reg.inputs), sort_keys=True, default=str)
    return hashlib.sha256(f"{salt}\0{canonical}".encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Stack config as the program sees it.


@dataclass
class StackConfig:
    project: str
    config: dict[str, str]
    secret_keys: list[str]
    notes: list[str]


def load_stack_config(root: Path, stack: str, secret_env: dict[str, str]) -> StackConfig:
    """The stack file's `config:` as Pulumi hands it to a program (strings; objects as JSON).

    `secure:` values cannot be decrypted without the Pulumi CLI: each key in `secret_env`
    (config key -> environment variable) is taken from the environment instead, as a secret."""
    project = (yaml.safe_load((root / "Pulumi.yaml").read_text()) or {}).get("name", "project")
    path = tier_spec.stack_path(stack, root)
    tier_spec.spec_data_from_stack_file(path)  # the file exists, parses and has the spec key
    raw = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    config: dict[str, str] = {}
    notes: list[str] = []
    for key, value in raw.items():
        full = key if ":" in key else f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            notes.append(f"{full}: `secure:` value skipped (the rehearsal cannot decrypt it)")
            continue
        config[full] = value if isinstance(value, str) else json.dumps(value)
    secret_keys = []
    for key, var in secret_env.items():
        if os.environ.get(var):
            config[key] = os.environ[var]
            secret_keys.append(key)
            notes.append(f"{key}: from ${var}, as a secret")
        else:
            config.pop(key, None)
            notes.append(f"{key}: not set (export {var} to set it)")
    return StackConfig(project, config, secret_keys, notes)


# ---------------------------------------------------------------------------------------------
# up and down.


def record_path(root: Path, stack: str) -> Path:
    return StackPaths(root, stack).rehearsal_record


@dataclass
class UpResult:
    exports: dict[str, Export]
    ran: list[tuple[str, CommandResult]]
    unchanged: list[str]
    seconds: float


def refusal(type_: str) -> TierkitError:
    return TierkitError(f"resource {type_} needs the Pulumi CLI; rehearsal runs lab and baremetal stacks")


def _failure(run: ProgramRun, runner: CommandRunner) -> TierkitError:
    if isinstance(run.error, TierkitError):
        return run.error
    if runner.failures:
        lines = []
        for f in runner.failures:
            lines.append(f"{f.name}: command failed with exit {f.code}" + (f" ({f.tail.splitlines()[-1]})" if f.tail else ""))
        return TierkitError(*lines, exit_code=1)
    if isinstance(run.error, RehearsalRefused):
        return refusal(str(run.error))
    return TierkitError(f"program: {type(run.error).__name__}: {run.error}; see the lines above", exit_code=1)


def up(program: Callable[[], None], root: Path, stack: str, secret_env: dict[str, str], log: Log) -> UpResult:
    """Preview (refusing cloud resources), then run each Command whose inputs changed since the
    record (replacing the old one), and delete recorded commands the program no longer makes."""
    started = time.monotonic()
    cfg = load_stack_config(root, stack, secret_env)
    for note in cfg.notes:
        log(f"config {note}")
    preview_runner = CommandRunner(execute=False, log=log)
    preview = run_program(program, preview_runner, project=cfg.project, stack=stack, config=cfg.config,
                          secret_keys=cfg.secret_keys, preview=True)
    # Refusals first: a cloud program may fail later in preview on invokes the rehearsal cannot answer.
    foreign = [t for t, _, custom in preview.constructed if custom and t != COMMAND]
    if foreign:
        raise refusal(foreign[0])
    if preview_runner.invoked:
        raise TierkitError(f"invoke {preview_runner.invoked[0]} needs the Pulumi CLI; rehearsal runs lab and baremetal stacks")
    if preview.error is not None:
        raise _failure(preview, preview_runner)
    names = ", ".join(r.name for r in preview_runner.planned)
    store = RecordStore(record_path(root, stack), stack)
    log(f"plan: {len(preview_runner.planned)} commands ({names}); those whose inputs match "
        f"{store.path.name} stay as they are")
    runner = CommandRunner(execute=True, log=log, store=store)
    run = run_program(program, runner, project=cfg.project, stack=stack, config=cfg.config,
                      secret_keys=cfg.secret_keys, preview=False)
    runner.wait_idle()
    if run.error is not None:
        raise _failure(run, runner)
    registered = {r.urn for r in run.registrations}
    stale = {c.urn for c in store.record.commands if c.urn not in registered}
    if stale:
        log(f"- {len(stale)} recorded command(s) the program no longer makes: deleting them")
        delete_recorded(store, stale, log)
    return UpResult(run.exports, runner.ran, runner.unchanged, time.monotonic() - started)


@dataclass
class DownResult:
    deleted: list[str]
    seconds: float


def _delete_one(entry: RecordedCommand, log: Log) -> CommandResult:
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
    on it is gone, independent ones in parallel. A failure stops the scheduling and keeps the rest
    recorded (TierkitError, exit 1). Returns the names deleted."""
    entries = {c.urn: c for c in store.record.commands if c.urn in urns}
    dependents = {urn: {o.urn for o in entries.values() if urn in o.dependencies} for urn in entries}
    pending = dict(entries)
    deleted: list[str] = []
    failures: list[CommandFailed] = []
    with ThreadPoolExecutor(max_workers=max(1, len(entries))) as pool:
        running: dict[Future[CommandResult], RecordedCommand] = {}
        while pending or running:
            if not failures:
                busy = set(pending) | {e.urn for e in running.values()}
                for urn in [u for u in pending if not (dependents[u] & busy)]:
                    entry = pending.pop(urn)
                    running[pool.submit(_delete_one, entry, log)] = entry
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                entry = running.pop(fut)
                try:
                    result = fut.result()
                except CommandFailed as exc:
                    failures.append(exc)
                    continue
                store.drop(entry.urn)
                deleted.append(entry.name)
                log(f"= {entry.name}: deleted in {result.seconds:.1f} s")
    if failures:
        raise TierkitError(*[f"{f.name}: delete failed with exit {f.code}; fix it and run `tierkit down` again" for f in failures], exit_code=1)
    return deleted


def down(root: Path, stack: str, log: Log) -> DownResult:
    """Run every recorded delete, dependents first (delete_recorded)."""
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
