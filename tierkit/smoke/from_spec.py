"""A tier spec's smoke test: the one mapping from a spec to smoke settings (load and gates).

`tierkit smoke --stack`, the Pulumi program's Smoke step (which runs that command) and the lab's
calibration probe all take their settings from `smoke_settings`. `min_output_tok_s: derive`
asks the planner: the tier's expected tok/s (single-stream decode of one engine x engines) times
`PLAN_FRACTION`. The plan's single-stream decode rate is the figure the report holds against
the measured one (tierkit/smoke/expected.py), unless the caller gives its own prediction.
"""

from __future__ import annotations

from typing import Any

from tierkit.smoke.gates import PLAN_FRACTION, Gates
from tierkit.smoke.run import SmokeSettings
from tierkit.spec import TierSpec, plan_for_spec

LOAD_FIELDS = ("concurrency", "requests", "input_len", "output_len", "warmup")
GATE_FIELDS = ("min_output_tok_s", "max_p99_ttft_ms", "max_p99_tpot_ms", "max_failed")


def gates_from_spec(spec: TierSpec) -> Gates:
    """The smoke gates a tier spec asks for (`derive` resolved through the planner)."""
    smoke = spec.smoke
    minimum = smoke.min_output_tok_s
    source = "the spec's smoke section"
    if minimum == "derive":
        expected = plan_for_spec(spec).expected_tok_s
        minimum = expected * PLAN_FRACTION
        source = f"the spec; min_output_tok_s derived as {PLAN_FRACTION:g} x the plan's {expected:.1f} tok/s"
    return Gates(
        min_output_tok_s=minimum,
        max_p99_ttft_ms=smoke.max_p99_ttft_ms,
        max_p99_tpot_ms=smoke.max_p99_tpot_ms,
        max_failed=smoke.max_failed,
        source=source,
    )


def smoke_settings(spec: TierSpec | None, given: dict[str, Any], gates: Gates | None = None) -> SmokeSettings:
    """Settings for one run: `given` (SmokeSettings fields and gate fields; None means not given)
    over the spec's smoke section, model and gates, over the defaults. `gates` replaces the gates
    altogether (a probe that only needs every request to succeed). Raises pydantic's
    ValidationError on values out of range."""
    load = {k: v for k, v in given.items() if k not in GATE_FIELDS and v is not None}
    gate_values = {k: given[k] for k in GATE_FIELDS if given.get(k) is not None}
    if spec is not None:
        if load.get("expected") is None:
            plan = plan_for_spec(spec)
            load["expected"] = {"per_stream_tok_s": plan.single_stream_tok_s,
                                "source": f"the plan: {plan.model} {plan.quantization} on "
                                          f"{plan.tensor_parallel * plan.pipeline_parallel}x {plan.gpu}"}
        base = gates_from_spec(spec).model_dump()
        overridden = " with command-line overrides" if gate_values else ""
        gate_values = {**base, **gate_values, "source": base["source"] + overridden}
        load = {**{k: getattr(spec.smoke, k) for k in LOAD_FIELDS}, **load}
        load.setdefault("model", spec.served_model_name)
        if given.get("duration_s") is not None and given.get("requests") is None:
            load.pop("requests")  # a duration run replaces the spec's request count
    return SmokeSettings(**load, gates=gates or Gates(**gate_values))
