"""Each `tierkit up`'s figures, kept per stack, so drift shows: in the planner (predicted vs
measured decode rate moving apart) or in the deploy (a step taking longer run after run).

One JSON object per line in `.tierkit/<stack>/history.jsonl`, appended after every up (it outlives
`tierkit down`, so drift across redeploys stays visible), kept to the
last MAX_RUNS. A line that does not parse is skipped (a run killed mid-write leaves at most one).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

MAX_RUNS = 200


class StepTime(BaseModel):
    name: str
    seconds: float
    ok: bool = True


class SmokeFigures(BaseModel):
    passed: bool
    output_throughput: float | None = None
    p99_ttft_ms: float | None = None
    predicted_stream_tok_s: float | None = None
    measured_stream_tok_s: float | None = None
    error_pct: float | None = None

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> SmokeFigures:
        """The headline figures of a smoke JSON report (`tierkit smoke --json`)."""
        plan = (report.get("plan_vs_measured") or [{}])[0]
        return cls(passed=bool(report.get("passed")), output_throughput=report.get("output_throughput"),
                   p99_ttft_ms=report.get("p99_ttft_ms"), predicted_stream_tok_s=plan.get("predicted"),
                   measured_stream_tok_s=plan.get("measured"), error_pct=plan.get("error_pct"))


class Run(BaseModel):
    at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    engine: str
    ok: bool
    seconds: float
    steps: list[StepTime] = Field(default_factory=list)
    smoke: SmokeFigures | None = None
    failure: str | None = None


def append(path: Path, run: Run) -> None:
    """Add `run`, keeping the last MAX_RUNS (rewritten whole through a temporary file)."""
    runs = [*load(path), run][-MAX_RUNS:]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(r.model_dump_json() + "\n" for r in runs))
    os.replace(tmp, path)


def load(path: Path, last: int | None = None) -> list[Run]:
    """The recorded runs, oldest first (the last `last` of them when given)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    runs = []
    for line in lines:
        try:
            runs.append(Run.model_validate(json.loads(line)))
        except (ValueError, ValidationError):
            continue
    return runs[-last:] if last else runs
