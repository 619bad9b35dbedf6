"""The smoke client end to end against the in-test SSE server (tests/support/smoke_fake_server.py):
every edge case is counted with its reason, prompts have the server's token count, and the load
has the shape asked for."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from smoke_fake_server import TEMPLATE_TOKENS, FakeServer

from tierkit.smoke.endpoint import parse_endpoint
from tierkit.smoke.gates import Gates
from tierkit.smoke.run import SmokeReport, SmokeSettings, run_smoke

N, IN, OUT = 6, 24, 8


# A request's timeout far above what the in-test server takes even on a loaded machine: only the
# hanging scenario is meant to meet one (it passes its own).
TIMEOUT_S = 30.0


def smoke(server: FakeServer, **kw: Any) -> SmokeReport:
    base = {"requests": N, "concurrency": 3, "input_len": IN, "output_len": OUT, "warmup": 1, "timeout_s": TIMEOUT_S}
    settings = SmokeSettings(endpoint=parse_endpoint(server.url), **{**base, **kw})
    return asyncio.run(run_smoke(settings))


@pytest.mark.parametrize("scenario", ["ok", "split", "comments", "crlf", "usage-null", "content-length", "close-delimited"])
def test_well_formed_streams_pass(fake: FakeServer, scenario: str) -> None:
    r = smoke(fake, model=scenario)
    assert r.passed, r.failures
    assert r.metrics["completed"] == N and r.metrics["failed"] == 0
    assert r.metrics["total_output_tokens"] == N * OUT
    assert r.metrics["total_input_tokens"] == N * IN  # the server's usage count: prompts are exact
    assert r.stream["done"] == N and r.metrics["p99_ttft_ms"] > 0 and r.metrics["mean_itl_ms"] > 0


def test_stream_details_are_counted(fake: FakeServer) -> None:
    # Each event is written in three pieces 2 ms apart; a client that reads late (a loaded machine)
    # gets some of them whole, so the count is bounded, not exact.
    assert 0 < smoke(fake, model="split").stream["split_events"] <= N * (OUT + 2)
    comments = smoke(fake, model="comments").stream
    assert (comments["comments"], comments["other_fields"]) == (N, 3 * N)
    assert smoke(fake, model="usage-null").stream["usage_only"] == N
    assert smoke(fake, model="ok").stream["usage_only"] == N


def test_missing_usage_falls_back_to_chunks_and_says_so(fake: FakeServer) -> None:
    r = smoke(fake, model="no-usage")
    assert r.passed and r.metrics["total_output_tokens"] == N * OUT
    assert r.usage_fallbacks == N and any("carried no usage" in note for note in r.notes)


HANG_TIMEOUT_S = 1.0


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [
        ("midstream-error", "error event mid-stream: engine core died"),
        ("legacy-error", "error event mid-stream: engine core died"),
        ("http-400", "HTTP 400: This model's maximum context length is 512 tokens"),
        ("http-500", "HTTP 500: Internal Server Error: engine is dead"),
        ("hang", f"timeout after {HANG_TIMEOUT_S:g} s"),
        ("reset", "connection reset by peer"),
        ("close-early", "connection closed by the server mid-response"),
        ("no-done", "stream ended without data: [DONE]"),
        ("not-sse", "HTTP 200 but not an event stream (Content-Type application/json)"),
    ],
)
def test_failures_are_counted_with_their_reason(fake: FakeServer, scenario: str, reason: str) -> None:
    # Only the hanging server meets the short timeout: on a loaded machine a fast failure can take
    # longer than it, and reaching the hanging server must not (else "(connecting)").
    r = smoke(fake, model=scenario, timeout_s=HANG_TIMEOUT_S if scenario == "hang" else TIMEOUT_S)
    assert r.failures == {reason: N}
    assert r.metrics["completed"] == 0 and r.metrics["failed"] == N
    assert not r.passed and r.reached_server
    assert {g.name for g in r.failed_gates} == {"failed", "text"}


def test_some_failures_within_max_failed_pass(fake: FakeServer) -> None:
    r = smoke(fake, model="flaky", requests=9, gates=Gates(max_failed=9))
    assert r.passed and r.metrics["failed"] == sum(r.failures.values()) >= 2
    assert set(r.failures) == {"HTTP 503: Internal Server Error: engine is dead"}


@pytest.mark.parametrize(("scenario", "problem"), [("empty-text", "returned empty text"), ("identical", "identical text")])
def test_garbage_at_full_speed_does_not_pass(fake: FakeServer, scenario: str, problem: str) -> None:
    r = smoke(fake, model=scenario)
    assert r.metrics["completed"] == N and r.metrics["output_throughput"] > 0
    assert [g.name for g in r.failed_gates] == ["text"] and problem in str(r.failed_gates[0].measured)


def test_chat_api_counts_the_template_and_role_chunk(fake: FakeServer) -> None:
    r = smoke(fake, model="ok", api="chat")
    assert r.passed
    assert r.metrics["total_input_tokens"] == N * IN  # the chat template's tokens included
    assert r.metrics["total_output_tokens"] == N * OUT
    chat_bodies = [b for b in fake.seen.bodies[-N:] if "messages" in b]
    assert len(chat_bodies) == N and len({len(b["messages"][0]["content"]) > 0 for b in chat_bodies}) == 1
    assert TEMPLATE_TOKENS > 0


def test_prompts_are_distinct_and_vllm_gets_ignore_eos(fake: FakeServer) -> None:
    before = len(fake.seen.bodies)
    smoke(fake, model="ok", warmup=2)
    bodies = fake.seen.bodies[before:]
    assert len(bodies) == N + 2  # warmup requests are sent, then left out of the figures
    assert len({b["prompt"] for b in bodies}) == N + 2
    assert all(b["ignore_eos"] is True and b["stream_options"] == {"include_usage": True} for b in bodies)
    assert all(b["max_tokens"] == OUT and b["stream"] is True for b in bodies)


def test_concurrency_is_a_cap_and_is_reached() -> None:
    with FakeServer(token_delay_s=0.005) as server:
        r = smoke(server, model="ok", concurrency=4, requests=12, warmup=0)
        assert r.passed and server.seen.peak == 4


def test_poisson_arrivals_spread_the_requests(fake: FakeServer) -> None:
    r = smoke(fake, model="ok", requests=10, request_rate=40.0, warmup=0)
    assert r.passed
    assert r.metrics["duration"] >= 10 / 40.0  # the last arrival is due at requests / rate


def test_duration_mode_stops_starting_requests_when_time_is_up(fake: FakeServer) -> None:
    r = smoke(fake, model="ok", requests=None, duration_s=0.4, warmup=0)
    assert r.passed and r.metrics["completed"] >= 3
    assert 0.4 <= r.metrics["duration"] < 1.5
    assert any("--duration run" in note for note in r.notes)


def test_not_vllm_server_gets_no_ignore_eos_and_word_prompts() -> None:
    with FakeServer(owned_by="openai", tokenize=False) as server:
        r = smoke(server, model="ok")
        assert r.passed and not r.is_vllm
        assert all("ignore_eos" not in b for b in server.seen.bodies)
        assert any("no /tokenize" in note for note in r.notes)
        assert any("not vLLM" in note for note in r.notes)


def test_model_defaults_to_the_first_listed(fake: FakeServer) -> None:
    assert smoke(fake).model == "ok"
