"""The smoke gates as a JUnit suite: one case per gate, measured and required in its output and in
a failed gate's message, the plan's figures against the measured ones in the suite's output.
`tierkit smoke --junit` builds it from the run, `tierkit up --junit` from the smoke JSON report."""

from __future__ import annotations

from typing import Any

from tierkit import junit
from tierkit.smoke.expected import Comparison, describe
from tierkit.smoke.gates import GateResult, from_report


def gates_suite(name: str, gates: list[GateResult], comparisons: list[Comparison], source: str | None,
                context: str, wall_s: float) -> junit.Suite:
    """`context` names what was measured (endpoint and model); `source` where the gates came from."""
    cases = [junit.Case(
        name=gate.name,
        classname="tierkit.smoke.gates",
        outcome="passed" if gate.passed else "failure",
        message="" if gate.passed else gate.describe(),
        detail="" if gate.passed else f"{gate.figures()}\ngates from {source or 'unknown'}",
        output=f"{gate.figures()} ({context})",
    ) for gate in gates]
    plan = "\n".join(f"plan vs measured: {describe(c)}" for c in comparisons)
    return junit.Suite(name=name, cases=cases, wall_s=wall_s, output=plan)


def from_json(name: str, report: dict[str, Any]) -> junit.Suite:
    """The suite of a smoke JSON report (`tierkit smoke --json`)."""
    comparisons = [Comparison.model_validate(c) for c in report.get("plan_vs_measured", [])]
    context = f"{report.get('endpoint', 'endpoint unknown')}, model {report.get('model', 'unknown')}"
    return gates_suite(name, from_report(report), comparisons, report.get("gate_source"), context,
                       float(report.get("duration", 0.0)))
