"""What one `tierkit up` did, as a CI system and the stack's history read it.

The engine (the rehearsal, or the Pulumi CLI's event stream) reports each program step it ran as
a `Step`; configure and smoke leave their own reports (the playbook's RunResult beside its log,
the smoke JSON). `suites` turns them into JUnit: one case per step with its duration, one per play
of configure and per verification gate on each host, one per smoke gate. `history_run` turns
them into the line `tierkit status` shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierkit import history, junit
from tierkit.ansible import RunResult, result_file
from tierkit.paths import StackPaths
from tierkit.smoke import junit_suite as smoke_suite

# Program resources -> the flow's step names; every other resource belongs to "servers".
STEP_OF = {"wait-ssh": "readiness", "configure": "configure", "calibrate": "calibrate", "smoke": "smoke"}
ORDER = ("servers", "readiness", "configure", "calibrate", "smoke")


@dataclass(frozen=True)
class Step:
    """One program resource the engine ran: its name, seconds, and why it failed (empty: it passed)."""

    resource: str
    seconds: float
    failure: str = ""


class EngineEvents:
    """Steps from the Pulumi engine's events (the JSON objects `pulumi up --event-log FILE` writes,
    one per line; tierkit/pulumi_cli.py hands them over): a command's time from its resourcePreEvent to
    its resOutputsEvent, and a failed one's reason from the last error diagnostic on its URN."""

    COMMAND = "command:local:Command"

    def __init__(self) -> None:
        self.planned: list[str] = []
        self.ran: list[Step] = []
        self._started: dict[str, float] = {}
        self._errors: dict[str, str] = {}

    @staticmethod
    def _name(urn: str) -> str:
        return urn.rsplit("::", 1)[-1]

    def __call__(self, event: dict[str, Any]) -> None:
        at = float(event.get("timestamp", 0))
        for key in ("resourcePreEvent", "resOutputsEvent", "resOpFailedEvent"):
            meta = (event.get(key) or {}).get("metadata") or {}
            if meta.get("type") != self.COMMAND or (event.get(key) or {}).get("planning"):
                continue
            urn = meta.get("urn", "")
            if key == "resourcePreEvent":
                self._started[urn] = at
                self.planned.append(self._name(urn))
            else:
                failure = "" if key == "resOutputsEvent" else (self._errors.get(urn) or "the operation failed")
                self.ran.append(Step(self._name(urn), max(at - self._started.get(urn, at), 0.0), failure))
        diagnostic = event.get("diagnosticEvent") or {}
        if diagnostic.get("urn") and diagnostic.get("severity") == "error":
            self._errors[diagnostic["urn"]] = " ".join(str(diagnostic.get("message", "")).split())[:500]


def _steps(ran: list[Step], planned: list[str]) -> list[tuple[str, float, str, bool]]:
    """(step, seconds, failure, ran) per flow step, resources grouped; planned but not run: skipped."""
    out: dict[str, list[Any]] = {}
    for step in ran:
        name = STEP_OF.get(step.resource, "servers")
        seconds, failure, _ = out.get(name, [0.0, "", True])
        out[name] = [seconds + step.seconds, failure or (f"{step.resource}: {step.failure}" if step.failure else ""), True]
    for resource in planned:
        out.setdefault(STEP_OF.get(resource, "servers"), [0.0, "", False])
    return [(name, *out[name]) for name in ORDER if name in out]  # type: ignore[misc]


def _configure_suite(stack: str, result: RunResult) -> junit.Suite:
    cases = [junit.Case(f"play: {p.name}", "tierkit.configure.plays", p.seconds,
                        "failure" if p.failures else "passed",
                        "; ".join(f"{f.host}: {f.task}: {f.message}" for f in p.failures)[:500],
                        f"log: {result.log}" if result.log else "")
             for p in result.plays]
    cases += [junit.Case(f"gate: {g.task} on {g.host}", "tierkit.configure.gates", 0.0,
                         "passed" if g.passed else "failure", "" if g.passed else g.message, "",
                         g.message if g.passed else "")
              for g in result.gates]
    return junit.Suite(f"tierkit up {stack}: configure", cases, wall_s=result.elapsed_s)


def suites(stack: str, ran: list[Step], planned: list[str], configure: RunResult | None,
           smoke: dict[str, Any] | None, up_log: str, failure: str | None = None) -> list[junit.Suite]:
    """The JUnit suites of one up: steps, then configure's plays and gates, then the smoke gates.
    An up that failed before any step ran (a refused stack) is one failed case, `up`."""
    cases = []
    if failure and not ran:
        cases.append(junit.Case("up", "tierkit.up", 0.0, "failure", failure.splitlines()[0][:500], f"{failure}\nlog: {up_log}"))
    for name, seconds, failure, did_run in _steps(ran, planned):
        if not did_run:
            cases.append(junit.Case(name, "tierkit.up", 0.0, "skipped", "an earlier step failed"))
            continue
        log = configure.log if name == "configure" and configure is not None and configure.log else up_log
        cases.append(junit.Case(name, "tierkit.up", seconds, "failure" if failure else "passed",
                                failure.splitlines()[0][:500] if failure else "", f"{failure}\nlog: {log}" if failure else ""))
    out = [junit.Suite(f"tierkit up {stack}: steps", cases)]
    if configure is not None:
        out.append(_configure_suite(stack, configure))
    if smoke is not None:
        out.append(smoke_suite.from_json(f"tierkit up {stack}: smoke", smoke))
    return out


def history_run(engine: str, seconds: float, ran: list[Step], planned: list[str], smoke: dict[str, Any] | None,
                failure: str | None) -> history.Run:
    steps = [history.StepTime(name=name, seconds=round(s, 1), ok=not f) for name, s, f, did in _steps(ran, planned) if did]
    return history.Run(engine=engine, ok=failure is None, seconds=round(seconds, 1), steps=steps,
                       smoke=history.SmokeFigures.from_report(smoke) if smoke is not None else None, failure=failure)


def read_fresh(path: Path, since: float) -> dict[str, Any] | None:
    """A JSON report written at or after `since` (epoch seconds), else None (an older run's)."""
    try:
        if path.stat().st_mtime < since:
            return None
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def record(paths: StackPaths, engine: str, started_at: float, seconds: float, ran: list[Step], planned: list[str],
           failure: str | None, junit_path: Path | None, up_log: str) -> None:
    """After an up, failed or not: append its line to the stack's history and, when asked, write
    its JUnit report. Configure's and smoke's own reports count only when this run wrote them."""
    configure_doc = read_fresh(result_file(paths.playbook_log("site")), started_at)
    configure = RunResult.model_validate(configure_doc) if configure_doc is not None else None
    smoke = read_fresh(paths.smoke_report, started_at)
    if ran:  # an up refused before anything ran leaves nothing behind
        history.append(paths.history, history_run(engine, seconds, ran, planned, smoke, failure))
    if junit_path is not None:
        junit.write(junit_path, suites(paths.stack, ran, planned, configure, smoke, up_log, failure))
