"""The figures of a run, computed as vLLM's benchmark (`vllm bench serve`) computes them.

- output_throughput = output tokens / duration; total_token_throughput adds input tokens;
  request_throughput = completed requests / duration. Duration excludes warmup.
- TTFT, E2EL per successful request; TPOT = (E2EL - TTFT) / (output tokens - 1), only for
  requests with more than one output token; ITL = every gap between content chunks.
- Each latency gets mean, median, p90 and p99 in milliseconds, with numpy's default (linear)
  percentile interpolation; an empty list gives 0, as in vLLM.
- Tokens come from the server's usage; a request without usage counts its content chunks instead,
  and `usage_fallbacks` says how many did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tierkit.smoke.stream import RequestResult

LATENCIES = ("ttft", "tpot", "itl", "e2el")
STATISTICS = ("mean", "median", "p90", "p99")


def percentile(ordered: list[float], p: float) -> float:
    """numpy.percentile(values, p) with linear interpolation; `ordered` sorted ascending."""
    if not ordered:
        return 0.0
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(name: str, seconds: list[float]) -> dict[str, float]:
    """`mean_<name>_ms`, `median_<name>_ms`, `p90_<name>_ms`, `p99_<name>_ms`."""
    ordered = sorted(seconds)
    mean = math.fsum(ordered) / len(ordered) if ordered else 0.0
    return {
        f"mean_{name}_ms": mean * 1000,
        f"median_{name}_ms": percentile(ordered, 50) * 1000,
        f"p90_{name}_ms": percentile(ordered, 90) * 1000,
        f"p99_{name}_ms": percentile(ordered, 99) * 1000,
    }


def output_tokens(result: RequestResult) -> int:
    """The server's count, else the content chunks (one token each on vLLM's default stream)."""
    return result.output_tokens if result.output_tokens is not None else result.chunks


@dataclass(frozen=True)
class Metrics:
    figures: dict[str, float | int]  # vLLM bench serve's key names
    usage_fallbacks: int  # successful requests whose tokens were counted from chunks

    def __getitem__(self, key: str) -> float | int:
        return self.figures[key]


def compute_metrics(results: list[RequestResult], duration_s: float) -> Metrics:
    ok = [r for r in results if r.success]
    outputs = [output_tokens(r) for r in ok]
    total_in = sum(r.prompt_len for r in ok)
    total_out = sum(outputs)
    per_s = 1.0 / duration_s if duration_s > 0 else 0.0
    figures: dict[str, float | int] = {
        "duration": duration_s,
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": len(ok) * per_s,
        "output_throughput": total_out * per_s,
        "total_token_throughput": (total_in + total_out) * per_s,
    }
    tpots = [(r.latency - r.ttft) / (n - 1) for r, n in zip(ok, outputs) if n > 1]
    series = {
        "ttft": [r.ttft for r in ok],
        "tpot": tpots,
        "itl": [gap for r in ok for gap in r.itl],
        "e2el": [r.latency for r in ok],
    }
    for name in LATENCIES:
        figures.update(summarize(name, series[name]))
    return Metrics(figures, usage_fallbacks=sum(1 for r in ok if r.output_tokens is None))
