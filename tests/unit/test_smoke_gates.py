"""Gate verdicts, the verdict line, and the tier spec -> gates mapping."""

from __future__ import annotations

import pytest

from tierkit.spec import plan_for_spec
from tierkit.smoke.from_spec import gates_from_spec
from tierkit.smoke.gates import PLAN_FRACTION, Gates, evaluate
from tierkit.smoke.metrics import Metrics
from tierkit.spec import load_stack

FIGURES = {"output_throughput": 812.34, "p99_ttft_ms": 2300.0, "p99_tpot_ms": 40.0, "failed": 3}


def verdicts(gates: Gates, problems: list[str] | None = None) -> dict[str, bool]:
    return {g.name: g.passed for g in evaluate(gates, Metrics(dict(FIGURES), 0), problems or [])}


def test_each_gate_compares_the_right_way() -> None:
    assert verdicts(Gates(min_output_tok_s=800, max_p99_ttft_ms=2300, max_p99_tpot_ms=39.9, max_failed=3)) == {
        "output_throughput": True, "p99_ttft_ms": True, "p99_tpot_ms": False, "failed": True, "text": True,
    }
    assert verdicts(Gates(min_output_tok_s=813))["output_throughput"] is False
    assert verdicts(Gates())["failed"] is False  # max_failed defaults to 0
    assert verdicts(Gates(max_failed=5), ["all 4 completed requests returned identical text"])["text"] is False


def test_unset_gates_are_not_judged() -> None:
    assert set(verdicts(Gates(max_failed=9))) == {"failed", "text"}


def test_describe_names_measured_and_required() -> None:
    results = evaluate(Gates(min_output_tok_s=1000), Metrics(dict(FIGURES), 0), ["3 of 9 completed requests returned empty text"])
    failed = [g.describe() for g in results if not g.passed]
    assert failed == [
        "output_throughput 812.34 tok/s, required >= 1000 tok/s",
        "failed 3, required <= 0",
        "text: 3 of 9 completed requests returned empty text",
    ]


def test_gates_from_a_stack_derive_from_the_plan() -> None:
    spec = load_stack("single-gpu")
    assert spec.smoke.min_output_tok_s == "derive"
    gates = gates_from_spec(spec)
    assert gates.min_output_tok_s == pytest.approx(plan_for_spec(spec).expected_tok_s * PLAN_FRACTION)
    assert gates.max_failed == spec.smoke.max_failed
    assert "derived" in gates.source


def test_gates_from_a_spec_with_numbers() -> None:
    spec = load_stack("failover")
    smoke = spec.smoke.model_copy(update={"min_output_tok_s": 250.0, "max_p99_ttft_ms": 900.0, "max_p99_tpot_ms": 60.0, "max_failed": 2})
    gates = gates_from_spec(spec.model_copy(update={"smoke": smoke}))
    assert (gates.min_output_tok_s, gates.max_p99_ttft_ms, gates.max_p99_tpot_ms, gates.max_failed) == (250.0, 900.0, 60.0, 2)
