"""The plan's figure held against the measurement, so a planner that drifts shows in every report.

The planner promises a single-stream decode rate (memory-bound decode: a few streams batched
together still read the weights once per step, so each stream keeps close to that rate until the
batch grows compute-bound). The run measures each stream's decode rate as 1000 / mean TPOT (ms).
On the lab the prediction is the calibration probe's single-stream measurement instead (the plan's
GPU figures cannot describe a CPU rehearsal); the report names which.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Expected(BaseModel):
    """What the plan (or the lab's calibration) predicts for this run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_stream_tok_s: float = Field(gt=0, description="single-stream decode tok/s the plan predicts")
    source: str = Field("the command line", description="where the prediction comes from")

    @field_validator("per_stream_tok_s")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class Comparison(BaseModel):
    name: str
    unit: str
    predicted: float
    measured: float | None  # None: nothing measured (no token streamed)
    error_pct: float | None  # (measured - predicted) / predicted x 100
    source: str


def compare(expected: Expected, metrics: dict[str, float | int]) -> list[Comparison]:
    """The predicted figures next to the measured ones, with the error in percent."""
    tpot = float(metrics.get("mean_tpot_ms", 0.0))
    measured = 1000.0 / tpot if tpot > 0 else None
    error = None if measured is None else round((measured - expected.per_stream_tok_s) / expected.per_stream_tok_s * 100, 1)
    return [Comparison(name="per_stream_decode", unit="tok/s", predicted=expected.per_stream_tok_s,
                       measured=None if measured is None else round(measured, 2), error_pct=error,
                       source=expected.source)]


def describe(c: Comparison) -> str:
    """`per_stream_decode: predicted 35.0 tok/s, measured 31.2 tok/s (-10.9%) (from ...)`."""
    if c.measured is None:
        return f"{c.name}: predicted {c.predicted:,.1f} {c.unit}, measured nothing (from {c.source})"
    return (f"{c.name}: predicted {c.predicted:,.1f} {c.unit}, measured {c.measured:,.1f} {c.unit} "
            f"({c.error_pct:+.1f}%) (from {c.source})")
