"""`tierkit up` and `tierkit down`: deploy or remove a stack.

With the `pulumi` CLI on PATH they drive it (tierkit/pulumi_cli.py: `pulumi up` / `pulumi
destroy`, with Pulumi's state and diffs). Without it they use tierkit's rehearsal
(tierkit/rehearsal/), which runs the same program's local commands for real. The first line
says which.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

import typer

from tierkit.commands.options import RequiredStackOpt
from tierkit.console import console, err_console, print_json
from tierkit.errors import TierkitError
from tierkit.paths import StackPaths
from tierkit.pulumi_cli import PulumiCli
from tierkit.rehearsal.record import record_path
from tierkit.spec import load_stack, project_root

if TYPE_CHECKING:  # the rehearsal's engine brings the Pulumi SDK: imported when up or down runs
    from tierkit.rehearsal.runtime import Export

Engine = Literal["auto", "pulumi", "rehearsal"]
EngineOpt = Annotated[str, typer.Option("--engine", help="auto: the Pulumi CLI when `pulumi` is on PATH, else the rehearsal; pulumi; rehearsal.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Progress to stderr; print the outcome (engine, seconds, outputs) as JSON on stdout.")]

REHEARSAL_UP = ("rehearsal (no Pulumi CLI): runs the program's local commands for real; {record} plays the "
                "stack's state: a command whose inputs are unchanged keeps its recorded outputs and does not run, "
                "a changed one is replaced; not a Pulumi state (local commands only)")
REHEARSAL_DOWN = "rehearsal (no Pulumi CLI): runs the deletes recorded in {record}, dependents first"


def choose_engine(engine: str) -> tuple[str, str | None]:
    """("pulumi", path) or ("rehearsal", None)."""
    if engine not in ("auto", "pulumi", "rehearsal"):
        raise TierkitError(f"--engine: {engine!r} is not an engine; use auto, pulumi or rehearsal")
    found = shutil.which("pulumi")
    if engine == "pulumi" and found is None:
        raise TierkitError("--engine: pulumi is not on PATH; install the Pulumi CLI, or use --engine rehearsal")
    if engine == "rehearsal" or found is None:
        return "rehearsal", None
    return "pulumi", found


def _say(as_json: bool):
    out = err_console if as_json else console
    return lambda line: out.print(line, markup=False, soft_wrap=True, highlight=False)


def _plain(exports: dict[str, Export]) -> dict[str, Any]:
    return {k: ("[secret]" if e.secret else e.value) for k, e in exports.items()}


def render_outputs(outputs: dict[str, Any], say) -> None:
    say("outputs:")
    for key, value in outputs.items():
        if key == "hosts" and isinstance(value, list):
            for h in value:
                say(f"  host: {h['name']} {h['address']}:{h['port']} ({h['user']}; known_hosts {h['known_hosts']})")
        elif key == "smoke" and isinstance(value, dict):
            verdict = "passed" if value.get("passed") else "FAILED"
            say(f"  smoke: {verdict}; {value.get('completed')} requests, {value.get('failed')} failed, "
                f"output {value.get('output_throughput', 0):.1f} tok/s")
            for gate in value.get("gates", []):
                say(f"    {gate}")
            if value.get("gate_source"):
                say(f"    gates from: {value['gate_source']}")
        elif key == "notes" and isinstance(value, list):
            for note in value:
                say(f"  note: {note}")
        elif isinstance(value, (dict, list)):
            say(f"  {key}: {json.dumps(value)}")
        else:
            say(f"  {key}: {value}")


JunitOpt = Annotated[Optional[Path], typer.Option("--junit", help="Write FILE as JUnit XML: one test case per step with its duration, per play of configure, per verification gate and per smoke gate; a failed step carries its reason and its log's path.")]


RefreshOpt = Annotated[bool, typer.Option("--refresh", help="Check the deployment against the world before changing it: with the Pulumi CLI, `pulumi up --refresh` (cloud resources re-read; a lost instance is made again, and its dependents follow); with the rehearsal, every command runs again, even those its record says are unchanged (each checks the servers and repairs drift, e.g. a lab host that died, a gate that should be measured again).")]


def up_command(stack: RequiredStackOpt, engine: EngineOpt = "auto", as_json: JsonOpt = False,
               junit: JunitOpt = None, refresh: RefreshOpt = False) -> None:
    """Deploy a stack: servers, SSH ready, configured and verified (site.yml), smoke gate passed.

    With the Pulumi CLI: `pulumi stack select --create`, then `pulumi config set --secret` for
    tierkit:apiKey and tierkit:hfToken from $TIERKIT_API_KEY and $HF_TOKEN (value on stdin) when
    they are set, then `pulumi up --yes --skip-preview`. Without it: the rehearsal runs the
    program's commands for real (lab and bare-metal stacks; a cloud stack needs the CLI), with
    the secrets from $TIERKIT_API_KEY and $HF_TOKEN; its record keeps unchanged commands as they
    are. Exits 1 when a step fails (a failed smoke gate fails the up).

    Every up, failed or not, adds its step times and smoke figures to .tierkit/STACK/history.jsonl (`tierkit status` shows them).
    """
    load_stack(stack)  # a bad spec stops here, before anything runs
    if junit is not None and not junit.parent.is_dir():
        raise TierkitError(f"--junit: {junit.parent} is not a directory; write the file somewhere that exists")
    kind, path = choose_engine(engine)
    from tierkit.deploy_report import EngineEvents, Step, record as record_up

    say = _say(as_json)
    root = project_root()
    started, started_at = time.monotonic(), time.time()
    ran: list[Step] = []
    planned: list[str] = []
    failure: str | None = None
    try:
        if kind == "pulumi":
            say(f"tierkit up: the Pulumi CLI at {path} (stack select, secrets from the environment, up); "
                f"what it reports is what happened")
            events = EngineEvents()
            try:
                outputs = PulumiCli(path, root, stack, say).up(events, refresh=refresh)
            finally:
                ran, planned = events.ran, events.planned
        else:
            record = record_path(root, stack).relative_to(root)
            say(f"tierkit up: {REHEARSAL_UP.format(record=record)}")
            from tierkit import program
            from tierkit.rehearsal.engine import Trace, up

            trace = Trace()
            try:
                result = up(program.main, root, stack, program.SECRET_ENV, say, trace, refresh=refresh)
            finally:
                ran, planned = [Step(*r) for r in trace.ran], trace.planned
            outputs = _plain(result.exports)
            say(f"ran {len(result.ran)} command(s) ({', '.join(n for n, _ in result.ran) or 'none'}); "
                f"{len(result.unchanged)} unchanged ({', '.join(result.unchanged) or 'none'})")
    except TierkitError as exc:
        failure = "; ".join(exc.problems)
        raise
    finally:
        record_up(StackPaths(root, stack), kind, started_at, time.monotonic() - started, ran, planned, failure, junit,
                  "the output of `tierkit up` (its stderr with --json)")
    seconds = round(time.monotonic() - started, 1)
    render_outputs(outputs, say)
    say(f"up {stack}: done in {seconds:.1f} s")
    if as_json:
        print_json({"engine": kind, "stack": stack, "seconds": seconds, "outputs": outputs})


def down_command(stack: RequiredStackOpt, engine: EngineOpt = "auto", as_json: JsonOpt = False) -> None:
    """Remove a stack: every step's delete, dependents first (the lab's hosts last).

    With the Pulumi CLI: `pulumi destroy --yes --skip-preview`. Without it: the rehearsal
    runs the deletes it recorded in .tierkit/STACK/rehearsal.json. Idempotent.
    """
    kind, path = choose_engine(engine)
    say = _say(as_json)
    root = project_root()
    started = time.monotonic()
    deleted: list[str] = []
    if kind == "pulumi":
        say(f"tierkit down: the Pulumi CLI at {path}: pulumi destroy --stack {stack}")
        PulumiCli(path, root, stack, say).destroy()
    else:
        from tierkit.rehearsal.engine import down

        say(f"tierkit down: {REHEARSAL_DOWN.format(record=record_path(root, stack).relative_to(root))}")
        deleted = down(root, stack, say).deleted
    seconds = round(time.monotonic() - started, 1)
    say(f"down {stack}: done in {seconds:.1f} s")
    if as_json:
        print_json({"engine": kind, "stack": stack, "seconds": seconds, "deleted": deleted})


def register(app: typer.Typer) -> None:
    app.command("up")(up_command)
    app.command("down")(down_command)
