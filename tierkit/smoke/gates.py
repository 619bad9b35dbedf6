"""Gates: the thresholds a run must meet, their verdicts, and where they come from.

Given on the command line, or taken from a tier spec (tierkit/smoke/from_spec.py, the one place
that maps a spec to gates). `min_output_tok_s: derive` asks the planner: the tier's expected tok/s
(single-stream decode of one engine x engines, every replica's data-parallel engines) times `PLAN_FRACTION`. The planner's estimate
is fitted to measured decode speeds (docs/planner-fit.md); the fraction leaves room for run-to-run noise without letting a tier that misses its promise by more than a
fifth through.
The text sanity check is always a gate.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tierkit.smoke import defaults
from tierkit.smoke.metrics import Metrics

PLAN_FRACTION = 0.8  # "derive": require this share of the plan's expected output tok/s


class Gates(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min_output_tok_s: float | None = Field(None, gt=0, description="output_throughput must reach this")
    max_p99_ttft_ms: float | None = Field(None, gt=0, description="p99_ttft_ms must not exceed this")
    max_p99_tpot_ms: float | None = Field(None, gt=0, description="p99_tpot_ms must not exceed this")
    max_failed: int = Field(defaults.MAX_FAILED, ge=0, description="failed requests allowed")
    source: str = Field("command line", description="where the thresholds came from")


class GateResult(BaseModel):
    name: str  # the metric's key (vLLM names), or "text"
    measured: float | str
    op: Literal[">=", "<="] | None  # None for the text check
    required: float | str
    unit: str
    passed: bool

    def measured_text(self) -> str:
        return _num(self.measured) + (f" {self.unit}" if self.unit else "")

    def required_text(self) -> str:
        if self.op is None:
            return str(self.required)
        return f"{self.op} {_num(self.required)}" + (f" {self.unit}" if self.unit else "")

    def figures(self) -> str:
        """`measured 812.30 tok/s, required >= 1000 tok/s`."""
        return f"measured {self.measured_text()}, required {self.required_text()}"

    def describe(self) -> str:
        """`output_throughput 812.30 tok/s, required >= 1000 tok/s`."""
        if self.op is None:
            return f"{self.name}: {self.measured}"
        return f"{self.name} {self.measured_text()}, required {self.required_text()}"

    def verdict(self) -> str:
        """`output_throughput FAIL: measured 812.30 tok/s, required >= 1000 tok/s`: the one line
        `status`, `up`'s summary and the JUnit reports print for a gate."""
        return f"{self.name} {'pass' if self.passed else 'FAIL'}: {self.figures()}"


def from_report(report: dict[str, Any]) -> list[GateResult]:
    """The gates of a smoke JSON report (`tierkit smoke --json`), read back as results."""
    return [GateResult.model_validate(g) for g in report.get("gates", [])]


def _num(value: float | str) -> str:
    if isinstance(value, str):
        return value
    if float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def evaluate(gates: Gates, metrics: Metrics, text_problems: list[str]) -> list[GateResult]:
    """One verdict per gate set, in a fixed order; the text check always comes last."""
    checks: list[tuple[str, float | None, Literal[">=", "<="], str]] = [
        ("output_throughput", gates.min_output_tok_s, ">=", "tok/s"),
        ("p99_ttft_ms", gates.max_p99_ttft_ms, "<=", "ms"),
        ("p99_tpot_ms", gates.max_p99_tpot_ms, "<=", "ms"),
        ("failed", float(gates.max_failed), "<=", ""),
    ]
    results = []
    for key, limit, op, unit in checks:
        if limit is None:
            continue
        measured = metrics[key]
        passed = measured >= limit if op == ">=" else measured <= limit
        results.append(GateResult(name=key, measured=measured, op=op, required=limit, unit=unit, passed=passed))
    results.append(
        GateResult(
            name="text",
            measured="; ".join(text_problems) or "non-empty and varied",
            op=None,
            required="non-empty, not identical across requests",
            unit="",
            passed=not text_problems,
        )
    )
    return results
