"""Pulumi's mock runtime, driven to run a program and record its resource graph.

This is the one module in tierkit that touches the Pulumi SDK's internals (`pulumi.runtime`'s
mocks, rpc, settings, stack and sync_await, and the resource protocol buffers). The rehearsal
runs programs through it, and the Pulumi program's tests use it as their harness.

A `Backend` decides what registering a custom resource does (run a command, fake a cloud) and
answers invokes; `run_program` installs it with a `RecordingMonitor`, which keeps every
registration with its parent and dependencies and applies the engine's secret rules that the
SDK's plain mock monitor leaves out. Secret values travel as the runtime carries them: a dict
tagged with the secret signature (`is_sealed`, `seal`, `reveal`, `has_secret`).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

_SIG, _SECRET = rpc._special_sig_key, rpc._special_secret_sig
_STACK = "pulumi:pulumi:Stack"


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
    """Decides what registering a resource does and what an invoke returns.

    Subclasses implement `create` (return the resource's id and output state) and, when the
    program invokes functions (data sources), `invoke` (token, arguments -> result)."""

    def create(self, reg: Registration) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def invoke(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        return {}

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        # Only `Resource.get` lookups reach here (registrations go through RecordingMonitor).
        reg = Registration(args.name, args.typ, args.name, None, [], bool(args.custom), dict(args.inputs), [])
        return self.create(reg)

    def call(self, args: mocks.MockCallArgs) -> dict[str, Any]:
        return self.invoke(args.token, dict(args.args))


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
        if request.type == _STACK:
            return resource_pb2.RegisterResourceResponse(urn=urn)
        _track(_ensure_event_loop())
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


# The event loops the mock runtime made (one per thread that registered a resource). Closed at
# exit, before the interpreter's last collection: a loop collected open during shutdown, on a
# loaded machine, printed "Exception ignored in: BaseEventLoop.__del__" after tierkit's own error.
_LOOPS: set[asyncio.AbstractEventLoop] = set()
_LOOPS_LOCK = threading.Lock()


def _track(loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    with _LOOPS_LOCK:
        _LOOPS.add(loop)
    return loop


@atexit.register
def _close_loops() -> None:
    with _LOOPS_LOCK:
        for loop in _LOOPS:
            if not loop.is_running() and not loop.is_closed():
                loop.close()


# Exception types whose failures their raiser reports (run_program's `reported`), for good: the
# event loop outlives each run, and a rejected output's "never retrieved" notice comes when it is
# garbage-collected, which can be after its run returned.
_REPORTED: set[type[BaseException]] = set()


def _quiet(loop: Any, context: dict[str, Any]) -> None:
    """A failed resource rejects every output that depended on it, and the event loop logs each
    rejection nobody retrieved; those of a `_REPORTED` type are dropped."""
    if not isinstance(context.get("exception"), tuple(_REPORTED)):
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
    reported: tuple[type[BaseException], ...] = (),
) -> ProgramRun:
    """Run a Pulumi program under the mock runtime; never raises for the program's own errors
    (they land in `ProgramRun.error`, after every started registration has finished).

    `reported`: exception types the caller reports itself (see `_quiet`)."""
    _REPORTED.update(reported)
    settings.ROOT.set(None)
    _track(_ensure_event_loop()).set_exception_handler(_quiet)
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
