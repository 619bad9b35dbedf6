"""The lab's smoke floor, measured on the deployed endpoint (the lab is a CPU rehearsal).

In the lab, vLLM runs on the CPU and serves tierkit's tiny model, so the plan's figures (GPU
memory bandwidth over the real model's weights) cannot gate it. The lab keeps the plan's rule and
replaces its one estimated input with a measurement:

    plan:  min output tok/s = PLAN_FRACTION x estimated single-stream tok/s x replicas
    lab:   min output tok/s = PLAN_FRACTION x measured  single-stream tok/s x replicas

The single-stream rate comes from a short probe of the endpoint: PROBE_REQUESTS requests, one at
a time, with the smoke run's own prompt and output lengths (after PROBE_WARMUP warm-up requests).
The smoke run then sends `concurrency` streams at once, which a healthy server batches to well
above one stream's rate; a server that serializes or stalls them falls below the floor.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, SecretStr

from tierkit.errors import TierkitError
from tierkit.smoke.endpoint import parse_endpoint
from tierkit.smoke.from_spec import smoke_settings
from tierkit.smoke.gates import PLAN_FRACTION, Gates
from tierkit.smoke.run import run_smoke
from tierkit.spec import TierSpec, plan_for_spec

PROBE_REQUESTS = 4
PROBE_WARMUP = 1


class Calibration(BaseModel):
    endpoint: str
    single_stream_tok_s: float
    replicas: int
    fraction: float
    min_output_tok_s: float
    probe_requests: int
    plan_expected_tok_s: float
    statement: str


def floor(single_stream_tok_s: float, replicas: int) -> float:
    return round(PLAN_FRACTION * single_stream_tok_s * replicas, 1)


def statement(c: Calibration, spec: TierSpec) -> str:
    return (
        f"lab gate: output_throughput >= {c.min_output_tok_s:.1f} tok/s = {c.fraction:g} x {c.single_stream_tok_s:.1f} "
        f"tok/s single-stream (measured by {c.probe_requests} requests, one at a time, on {c.endpoint}) x "
        f"{c.replicas} replica(s). These figures come from a CPU rehearsal (vLLM on the CPU serving tierkit's tiny "
        f"model); the plan's {c.plan_expected_tok_s:,.0f} tok/s for {spec.gpu.count}x {spec.gpu.model} is not the gate here."
    )


def calibrate(endpoint: str, spec: TierSpec, api_key: SecretStr | None) -> Calibration:
    """Probe `endpoint` and derive the lab's floor; TierkitError (exit 1) if the probe fails."""
    # The spec's smoke run (model, prompt and output lengths), one request at a time.
    settings = smoke_settings(
        spec,
        {"endpoint": parse_endpoint(endpoint), "concurrency": 1, "requests": PROBE_REQUESTS,
         "warmup": PROBE_WARMUP, "api_key": api_key},
        gates=Gates(source="calibration probe: every request must succeed"),
    )
    report = asyncio.run(run_smoke(settings))
    if not report.passed:
        why = "; ".join(g.describe() for g in report.failed_gates) or "no request completed"
        raise TierkitError(f"calibrate: the probe of {endpoint} failed ({why}); the endpoint is not serving properly",
                           exit_code=1)
    single = report.metrics["output_throughput"]
    replicas = spec.replicas  # a model split over servers is one replica
    c = Calibration(
        endpoint=endpoint,
        single_stream_tok_s=round(single, 1),
        replicas=replicas,
        fraction=PLAN_FRACTION,
        min_output_tok_s=floor(single, replicas),
        probe_requests=PROBE_REQUESTS,
        plan_expected_tok_s=plan_for_spec(spec).expected_tok_s,
        statement="",
    )
    return c.model_copy(update={"statement": statement(c, spec)})
