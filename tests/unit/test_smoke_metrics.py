"""Metric arithmetic on hand-made timelines, checked against numbers worked out by hand
(vLLM's definitions: TPOT = (E2EL - TTFT) / (tokens - 1), numpy's linear percentiles)."""

from __future__ import annotations

import json

import pytest

from tierkit.smoke.metrics import compute_metrics, percentile
from tierkit.smoke.sse import StreamCounters
from tierkit.smoke.stream import RequestResult, StreamSink


def ok(start: float, token_times: list[float], tokens: int | None, prompt: int) -> RequestResult:
    """A successful request whose content chunks arrived at `token_times` (absolute seconds)."""
    return RequestResult(
        start=start,
        prompt_len=prompt,
        ttft=token_times[0] - start,
        latency=token_times[-1] - start,
        itl=[b - a for a, b in zip(token_times, token_times[1:])],
        chunks=len(token_times),
        output_tokens=tokens,
        text="some text",
    )


TIMELINE = [
    ok(0.00, [0.10, 0.20, 0.35], tokens=3, prompt=10),  # ttft .1, itl .1 .15, e2el .35, tpot .125
    ok(0.05, [0.25, 0.30], tokens=2, prompt=12),  # ttft .2, itl .05, e2el .25, tpot .05
    ok(0.10, [0.40], tokens=1, prompt=8),  # ttft .3, e2el .3, no tpot (one token)
    RequestResult(start=0.2, prompt_len=99, error="HTTP 500: boom", answered=True),  # left out
]


def test_throughputs_and_counts() -> None:
    m = compute_metrics(TIMELINE, duration_s=0.5)
    assert (m["completed"], m["failed"]) == (3, 1)
    assert (m["total_input_tokens"], m["total_output_tokens"]) == (30, 6)
    assert m["output_throughput"] == pytest.approx(12.0)
    assert m["total_token_throughput"] == pytest.approx(72.0)
    assert m["request_throughput"] == pytest.approx(6.0)
    assert m.usage_fallbacks == 0


@pytest.mark.parametrize(
    ("name", "mean", "median", "p90", "p99"),
    [
        ("ttft", 200.0, 200.0, 280.0, 298.0),
        ("tpot", 87.5, 87.5, 117.5, 124.25),
        ("itl", 100.0, 100.0, 140.0, 149.0),
        ("e2el", 300.0, 300.0, 340.0, 349.0),
    ],
)
def test_latency_statistics(name: str, mean: float, median: float, p90: float, p99: float) -> None:
    m = compute_metrics(TIMELINE, duration_s=0.5)
    got = [m[f"{stat}_{name}_ms"] for stat in ("mean", "median", "p90", "p99")]
    assert got == pytest.approx([mean, median, p90, p99])


def test_percentile_matches_numpy_linear() -> None:
    # numpy.percentile([15, 20, 35, 40, 50], [0, 40, 50, 90, 100]) == [15, 29, 35, 46, 50]
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert [percentile(values, p) for p in (0, 40, 50, 90, 100)] == pytest.approx([15, 29, 35, 46, 50])
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)
    assert percentile([], 99) == 0.0


def test_missing_usage_counts_chunks_and_says_so() -> None:
    m = compute_metrics([ok(0.0, [0.1, 0.2, 0.3, 0.4], tokens=None, prompt=5)], duration_s=1.0)
    assert m["total_output_tokens"] == 4 and m.usage_fallbacks == 1
    assert m["mean_tpot_ms"] == pytest.approx(100.0)


def test_no_success_gives_zeros_like_vllm() -> None:
    m = compute_metrics([RequestResult(start=0, prompt_len=4, error="connection refused")], duration_s=2.0)
    assert m["completed"] == 0 and m["failed"] == 1 and m["output_throughput"] == 0
    assert m["p99_ttft_ms"] == 0 and m["mean_itl_ms"] == 0


def test_stream_sink_timeline_from_bytes() -> None:
    """Bytes with chosen arrival times -> the same timings vLLM's client would record."""
    sink = StreamSink(start=10.0, prompt_len=7, chat=False, counters=StreamCounters())
    sink.on_head(200, {"content-type": "text/event-stream"})

    def event(obj: object) -> bytes:
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    sink.on_body(event({"choices": [{"text": "a"}]}), 10.5)
    sink.on_body(event({"choices": [{"text": "b"}]})[:9], 10.6)  # half an event: no timestamp yet
    sink.on_body(event({"choices": [{"text": "b"}]})[9:], 10.7)
    sink.on_body(event({"choices": [{"text": "c"}]}) + event({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}), 11.0)
    sink.on_body(b"data: [DONE]\n\n", 11.2)
    r = sink.finish(None)
    assert r.success and r.text == "abc"
    assert (r.ttft, r.latency, r.output_tokens, r.prompt_len) == pytest.approx((0.5, 1.0, 3, 9))
    assert r.itl == pytest.approx([0.2, 0.3])
    m = compute_metrics([r], duration_s=1.0)
    assert m["mean_tpot_ms"] == pytest.approx(250.0)  # (1.0 - 0.5) / (3 - 1)
