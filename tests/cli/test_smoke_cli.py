"""`tierkit smoke` as users run it: exit codes 0/1/2, the verdict line, --json keys, the API key."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from smoke_fake_server import FakeServer

pytestmark = pytest.mark.cli

TIERKIT = [str(Path(sys.executable).parent / "tierkit")]  # the console script of this venv
LOAD = ["--requests", "6", "--concurrency", "3", "--input-len", "16", "--output-len", "8", "--timeout", "2"]
KEY = "sk-do-not-print-4f1c"

VLLM_KEYS = [
    "duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
    "output_throughput", "total_token_throughput",
    *(f"{stat}_{name}_ms" for name in ("ttft", "tpot", "itl", "e2el") for stat in ("mean", "median", "p99")),
]


def tierkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.run([*TIERKIT, "smoke", *args], capture_output=True, text=True, timeout=60, env={**base, **(env or {})})


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def test_pass_exits_0_and_writes_vllm_keys(fake: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = tierkit("--endpoint", fake.url, *LOAD, "--min-output-tok-s", "1", "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().splitlines()[-1].startswith("PASS: 3 gates met")
    data = json.loads(out.read_text())
    assert all(key in data for key in VLLM_KEYS)
    assert data["passed"] is True and data["completed"] == 6 and data["total_output_tokens"] == 48
    assert [g["name"] for g in data["gates"]] == ["output_throughput", "failed", "text"]
    assert data["request_rate"] == "inf" and data["max_concurrency"] == 3


def test_gate_failure_exits_1_and_names_measured_vs_required(fake: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = tierkit("--endpoint", fake.url, "--model", "slow", *LOAD, "--max-p99-ttft-ms", "50",
                "--min-output-tok-s", "1e9", "--json", str(out))
    assert p.returncode == 1, p.stdout + p.stderr
    verdict = " ".join(p.stdout.split("FAIL: ", 1)[1].split())
    assert verdict.startswith("output_throughput ")
    assert "tok/s, required >= 1000000000 tok/s; p99_ttft_ms " in verdict and "ms, required <= 50 ms" in verdict
    assert json.loads(out.read_text())["passed"] is False


def test_failed_requests_exit_1_with_reasons(fake: FakeServer) -> None:
    p = tierkit("--endpoint", fake.url, "--model", "http-500", *LOAD)
    assert p.returncode == 1
    assert "HTTP 500: Internal Server Error: engine is dead" in p.stdout
    assert "FAIL: failed 6, required <= 0" in " ".join(p.stdout.split())


def test_refused_endpoint_exits_2(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = tierkit("--endpoint", f"http://127.0.0.1:{port}", *LOAD)
    assert p.returncode == 2
    assert p.stderr.startswith("error: --endpoint: GET http://127.0.0.1:") and "connection refused" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "https://x:1"], "error: --endpoint: 'https://x:1' is https"),
        (["--endpoint", "http://x:8000/v1"], "includes the API path"),
        (["--endpoint", "x:8000"], "is not an http:// URL"),
        (["--endpoint", "http://x:1", "--concurrency", "0"], "error: --concurrency: Input should be greater than or equal to 1 (got 0)"),
        (["--endpoint", "http://x:1", "--requests", "5", "--duration", "3"], "--requests and --duration both given"),
        (["--endpoint", "http://x:1", "--api", "embeddings"], "error: --api: 'embeddings' is not an API"),
        (["--endpoint", "http://x:1", "--api-key-file", "/nonexistent/key"], "error: --api-key-file: cannot read"),
        (["--endpoint", "http://x:1", "--json", "/nonexistent/dir/r.json"], "error: --json: '/nonexistent/dir' is not a directory"),
    ],
)
def test_unusable_arguments_exit_2(args: list[str], message: str) -> None:
    p = tierkit(*args)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_api_key_is_sent_and_never_printed_or_written(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with FakeServer(api_key=KEY) as server:
        p = tierkit("--endpoint", server.url, *LOAD, "--json", str(out), env={"OPENAI_API_KEY": KEY})
        assert p.returncode == 0, p.stdout + p.stderr
        assert set(server.seen.auth) == {f"Bearer {KEY}"}
        keyfile = tmp_path / "key"
        keyfile.write_text(KEY + "\n")
        p2 = tierkit("--endpoint", server.url, *LOAD, "--api-key-file", str(keyfile))
        assert p2.returncode == 0
        wrong = tmp_path / "wrong"
        wrong.write_text("not-" + KEY)
        p3 = tierkit("--endpoint", server.url, *LOAD, "--api-key-file", str(wrong))
        assert p3.returncode == 2 and "error: --api-key-file: the server refused the API key (HTTP 401" in p3.stderr
        missing = tierkit("--endpoint", server.url, *LOAD)
        assert missing.returncode == 2
    for text in (p.stdout, p.stderr, p2.stdout, p2.stderr, p3.stdout, p3.stderr, out.read_text()):
        assert KEY not in text


def test_stack_supplies_load_and_gates(fake: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    # The lab stack derives its throughput floor from the plan (GPU figures: far above a fake
    # server on loopback) and names a model the fake server does not list, so pass --model.
    p = tierkit("--stack", "single-gpu", "--endpoint", fake.url, "--model", "ok", "--requests", "4",
                "--json", str(out))
    data = json.loads(out.read_text())
    assert data["input_len"] == 64 and data["output_len"] == 64 and data["max_concurrency"] == 8
    assert data["num_prompts"] == 4 and "derived" in data["gate_source"]
    assert data["gates"][0]["name"] == "output_throughput"
    assert p.returncode == (0 if data["gates"][0]["passed"] else 1)


def test_each_run_draws_fresh_prompts_unless_seeded(tmp_path: Path) -> None:
    """A re-run against the same server must not find its prompts in vLLM's prefix cache."""
    with FakeServer() as server:
        def prompts(*seed: str) -> tuple[set[str], int]:
            server.seen.bodies.clear()
            out = tmp_path / "r.json"
            p = tierkit("--endpoint", server.url, *LOAD, *seed, "--json", str(out))
            assert p.returncode == 0, p.stdout + p.stderr
            return {b["prompt"] for b in server.seen.bodies}, json.loads(out.read_text())["seed"]

        first, first_seed = prompts()
        second, second_seed = prompts()
        assert first_seed != second_seed and not first & second
        repeat, repeat_seed = prompts("--seed", str(first_seed))
        assert repeat_seed == first_seed and repeat == first


def test_failed_gate_writes_junit_with_measured_and_required(fake: FakeServer, tmp_path: Path) -> None:
    import xmlschema
    from xml.etree import ElementTree as ET

    out = tmp_path / "smoke.xml"
    p = tierkit("--endpoint", fake.url, *LOAD, "--min-output-tok-s", "1e9", "--junit", str(out))
    assert p.returncode == 1, p.stdout + p.stderr
    xmlschema.XMLSchema(Path(__file__).resolve().parents[1] / "support" / "junit.xsd").validate(out)
    cases = {c.attrib["name"]: c for c in ET.parse(out).getroot().iter("testcase")}
    assert set(cases) == {"output_throughput", "failed", "text"}
    failure = cases["output_throughput"].find("failure")
    assert failure is not None
    assert "required >= 1000000000 tok/s" in failure.attrib["message"]
    assert failure.attrib["message"].startswith("output_throughput ") and " tok/s, required" in failure.attrib["message"]
    assert cases["failed"].find("failure") is None


def test_junit_into_a_missing_directory_fails_before_the_run(tmp_path: Path) -> None:
    p = tierkit("--endpoint", "http://127.0.0.1:9", *LOAD, "--junit", str(tmp_path / "nope" / "r.xml"))
    assert p.returncode == 2 and p.stderr.startswith("error: --junit: ") and "Traceback" not in p.stderr


def test_plan_vs_measured_in_table_json_and_junit(fake: FakeServer, tmp_path: Path) -> None:
    from xml.etree import ElementTree as ET

    out, xml = tmp_path / "r.json", tmp_path / "r.xml"
    p = tierkit("--endpoint", fake.url, *LOAD, "--expect-stream-tok-s", "1000", "--expect-source", "a test plan",
                "--json", str(out), "--junit", str(xml))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "plan vs measured" in p.stdout and "a test plan" in p.stdout
    (row,) = json.loads(out.read_text())["plan_vs_measured"]
    assert row["name"] == "per_stream_decode" and row["predicted"] == 1000 and row["source"] == "a test plan"
    assert row["error_pct"] == round((row["measured"] - 1000) / 1000 * 100, 1)
    suite_out = ET.parse(xml).getroot().findtext("testsuite/system-out", "")
    assert "plan vs measured: per_stream_decode: predicted 1,000.0 tok/s" in suite_out


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_expected_rate_must_be_a_positive_finite_number(value: str) -> None:
    p = tierkit("--endpoint", "http://127.0.0.1:9", *LOAD, "--expect-stream-tok-s", value)
    assert p.returncode == 2 and p.stderr.startswith("error: --expect-stream-tok-s: ") and "Traceback" not in p.stderr
