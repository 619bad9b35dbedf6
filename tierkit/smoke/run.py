"""One smoke run end to end: discover the model, build prompts, load, measure, judge.

`SmokeSettings` is the validated input (from the CLI or a tier spec); `run_smoke` returns a
`SmokeReport` whose `as_json` uses `vllm bench serve`'s key names plus `gates` and `passed`.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

import uvloop
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from tierkit.smoke import defaults
from tierkit.smoke.endpoint import Endpoint
from tierkit.smoke.expected import Comparison, Expected, compare
from tierkit.smoke.gates import GateResult, Gates, evaluate
from tierkit.smoke.http import ConnectionPool, build_request
from tierkit.smoke.load import LoadShape, Prepared, run_load
from tierkit.smoke.metrics import Metrics, compute_metrics
from tierkit.smoke.prompts import build_prompts, request_body
from tierkit.smoke.sanity import text_problems
from tierkit.smoke.server import ServerApi
from tierkit.smoke.stream import RequestResult

DURATION_PROMPTS = 256  # distinct prompts cycled through in a --duration run

PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


class SmokeSettings(BaseModel):
    """Everything a run needs. The API key is excluded from every dump."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: Endpoint
    model: str | None = None
    api: Literal["completions", "chat"] = "completions"
    concurrency: int = Field(defaults.CONCURRENCY, ge=1, le=4096)
    requests: int | None = Field(None, ge=1, le=1_000_000, description="None only for a duration_s run")
    duration_s: float | None = Field(None, gt=0, le=7 * 86400, allow_inf_nan=False)
    request_rate: float = Field(math.inf, gt=0)  # inf: all at once; nan fails gt
    input_len: int = Field(defaults.INPUT_LEN, ge=1, le=1 << 24)
    output_len: int = Field(defaults.OUTPUT_LEN, ge=1, le=1 << 24)
    warmup: int = Field(defaults.WARMUP, ge=0, le=10_000)
    timeout_s: float = Field(defaults.TIMEOUT_S, gt=0, le=86400, allow_inf_nan=False)
    seed: int = Field(default_factory=lambda: secrets.randbelow(1 << 31),
                      description="Prompts and arrivals; default a fresh one per run, so no run finds its prompts "
                                  "in the server's prefix cache from an earlier one")
    api_key: SecretStr | None = Field(None, exclude=True, repr=False)
    gates: Gates = Field(default_factory=Gates)
    expected: Expected | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_stop_rule(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if data.get("requests") is not None and data.get("duration_s") is not None:
                raise ValueError("--requests and --duration both given; pick one")
            if data.get("requests") is None and data.get("duration_s") is None:
                data = {**data, "requests": defaults.REQUESTS}
        return data

    @property
    def shape(self) -> LoadShape:
        return LoadShape(self.concurrency, self.requests, self.duration_s, self.request_rate, self.warmup, self.seed)


class SmokeReport(BaseModel):
    settings: SmokeSettings
    model: str
    is_vllm: bool
    metrics: dict[str, float | int]  # vLLM key names; counts stay ints
    gates: list[GateResult]
    passed: bool
    reached_server: bool  # at least one measured request got an HTTP response
    failures: dict[str, int]  # reason -> count
    usage_fallbacks: int  # completed requests whose output tokens were counted from chunks
    stream: dict[str, int]
    client_cpu_s: float
    notes: list[str]

    @property
    def failed_gates(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    @property
    def plan_vs_measured(self) -> list[Comparison]:
        expected = self.settings.expected
        return compare(expected, self.metrics) if expected is not None else []

    def as_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            **self.metrics,
            "gates": [g.model_dump() for g in self.gates],
            "passed": self.passed,
            "endpoint": s.endpoint.url,
            "model": self.model,
            "backend": "vllm" if self.is_vllm else "openai-compatible",
            "api": s.api,
            "max_concurrency": s.concurrency,
            "num_prompts": s.shape.requests,
            "duration_limit_s": s.duration_s,
            "request_rate": "inf" if math.isinf(s.request_rate) else s.request_rate,
            "input_len": s.input_len,
            "output_len": s.output_len,
            "warmup": s.warmup,
            "seed": s.seed,
            "gate_source": s.gates.source,
            "plan_vs_measured": [c.model_dump() for c in self.plan_vs_measured],
            "failures": self.failures,
            "stream": self.stream,
            "usage_fallbacks": self.usage_fallbacks,
            "client_cpu_s": self.client_cpu_s,
            "notes": self.notes,
        }


async def run_smoke(settings: SmokeSettings, on_result: Callable[[RequestResult], None] | None = None,
                    on_phase: Callable[[str], None] | None = None) -> SmokeReport:
    """Run the load the settings describe and judge it; TierkitError when nothing can be sent."""
    say = on_phase or (lambda _msg: None)
    chat = settings.api == "chat"
    shape = settings.shape
    pool = ConnectionPool(settings.endpoint, settings.timeout_s)
    try:
        api = ServerApi(settings.endpoint, pool, settings.api_key)
        served = await api.served_model(settings.model)
        measured = shape.requests if shape.requests is not None else DURATION_PROMPTS
        say(f"model {served.name}: building {measured + shape.warmup} prompts of {settings.input_len} tokens")
        prompts = await build_prompts(api, served.name, chat, measured + shape.warmup, settings.input_len, settings.seed)
        items = [
            Prepared(
                build_request(
                    "POST",
                    settings.endpoint,
                    PATHS[settings.api],
                    request_body(served.name, text, chat, settings.output_len, served.is_vllm),
                    settings.api_key,
                ),
                length,
            )
            for text, length in zip(prompts.texts, prompts.lengths)
        ]
        say("warming up" if shape.warmup else "running")
        outcome = await run_load(pool, items, chat, shape, on_result)
    finally:
        pool.close()
    metrics = compute_metrics(outcome.results, outcome.duration_s)
    gates = evaluate(settings.gates, metrics, text_problems(outcome.results))
    return SmokeReport(
        settings=settings,
        model=served.name,
        is_vllm=served.is_vllm,
        metrics=metrics.figures,
        gates=gates,
        passed=all(g.passed for g in gates),
        reached_server=any(r.answered for r in outcome.results),
        failures=dict(Counter(r.error for r in outcome.results if r.error is not None).most_common()),
        stream=outcome.counters.as_dict(),
        usage_fallbacks=metrics.usage_fallbacks,
        client_cpu_s=outcome.cpu_s,
        notes=_notes(settings, served.is_vllm, prompts.note, metrics, outcome.warmup),
    )


def smoke(settings: SmokeSettings, on_result: Callable[[RequestResult], None] | None = None,
          on_phase: Callable[[str], None] | None = None) -> SmokeReport:
    """`run_smoke` on uvloop, whose C event loop halves the client's CPU per streamed token."""
    return uvloop.run(run_smoke(settings, on_result, on_phase))


def _notes(settings: SmokeSettings, is_vllm: bool, prompt_note: str | None, metrics: Metrics,
           warmup: list[RequestResult]) -> list[str]:
    notes = [prompt_note] if prompt_note else []
    if not is_vllm:
        notes.append("the server is not vLLM: ignore_eos not sent, so outputs may stop before --output-len")
    if metrics.usage_fallbacks:
        notes.append(
            f"{metrics.usage_fallbacks} completed requests carried no usage: "
            "their output tokens were counted as content chunks"
        )
    warm_failed = [r for r in warmup if not r.success]
    if warm_failed:
        notes.append(f"{len(warm_failed)} of {len(warmup)} warmup requests failed ({warm_failed[0].error})")
    if settings.duration_s is not None:
        notes.append(f"--duration run: {DURATION_PROMPTS} distinct prompts, reused in turn (a reused prompt may find "
                     "its first blocks in vLLM's prefix cache)")
    return notes
