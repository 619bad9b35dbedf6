"""`tierkit up --stack single-gpu` end to end on the lab, without the Pulumi CLI (the rehearsal):
a lab host, the roles, real vLLM (on the CPU), and a smoke gate passed; a second up leaves every
command as recorded; a hung engine is restarted by the watchdog; `tierkit down` leaves nothing.
An API key is set, so the secret's whole path is real:
configure hands it to vLLM, calibrate and smoke authenticate with it, and it is never printed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from tierkit.lab.drills import ENGINE_CORE
from up_support import (
    Up, deployed, down_leaves_nothing, lab_name, on_host, report_timing, spec_smoke, state_dir, tierkit, up, vllm_main_pid,
)

pytestmark = pytest.mark.lab

STACK = "single-gpu"
API_KEY = "tk-e2e-2f6c1d9a7b"
ENV = {"TIERKIT_API_KEY": API_KEY}
# The watchdog: 3 failed checks 10 s apart, each up to 5 s (roles/vllm/defaults/main.yml), then
# vLLM's stop; loading the tiny model again on the CPU takes about a minute.
WATCHDOG_LIMIT_S = 90
SERVE_AGAIN_LIMIT_S = 600


@pytest.fixture(scope="module")
def first() -> Iterator[Up]:
    yield from deployed(STACK, ENV)


def test_up_from_nothing_passes_its_gate(first: Up) -> None:
    assert first.proc.returncode == 0, first.log[-3000:]
    assert first.log.splitlines()[0].startswith("tierkit up: rehearsal (no Pulumi CLI)")
    out = first.result
    assert out["engine"] == "rehearsal"
    outputs = out["outputs"]
    smoke = outputs["smoke"]
    assert smoke["passed"] is True and smoke["failed"] == 0
    assert smoke["completed"] == spec_smoke(STACK)["requests"]
    assert "These figures come from a CPU rehearsal" in smoke["gate_source"]
    assert "These figures come from a CPU rehearsal" in first.log
    report = json.loads((state_dir(STACK) / "smoke.json").read_text())
    assert report["backend"] == "vllm" and report["model"] == "tiny-llama"
    host = outputs["hosts"][0]
    assert outputs["endpoint"] == f"http://{host['address']}:8000"
    assert host["known_hosts"] == str(state_dir(STACK) / "known_hosts")
    assert API_KEY not in first.proc.stdout + first.proc.stderr
    for path in state_dir(STACK).rglob("*"):
        if path.is_file():
            assert API_KEY not in path.read_text(errors="replace"), path
    report_timing(STACK, "cold (no lab; image, wheelhouse and model cached)", first.seconds)


def test_vllm_requires_the_key(first: Up) -> None:
    host = first.result["outputs"]["hosts"][0]["name"]
    base = first.result["outputs"]["endpoint"]
    lab = lab_name(STACK)
    without = tierkit("lab", "exec", lab, "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/v1/models")
    with_key = tierkit("lab", "exec", lab, "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                       "-H", f"Authorization: Bearer {API_KEY}", f"{base}/v1/models")
    assert (without.stdout, with_key.stdout) == ("401", "200"), host


def test_second_up_changes_nothing(first: Up) -> None:
    host = first.result["outputs"]["hosts"][0]["name"]
    pid = vllm_main_pid(host)
    pinned = (state_dir(STACK) / "known_hosts").read_text()
    second = up(STACK, ENV)
    assert second.proc.returncode == 0, second.log[-3000:]
    assert "ran 0 command(s) (none); 5 unchanged" in second.log, "the record stands for every command"
    assert vllm_main_pid(host) == pid, "vLLM was restarted"
    assert (state_dir(STACK) / "known_hosts").read_text() == pinned
    assert second.result["outputs"]["smoke"]["passed"] is True  # the recorded verdict
    report_timing(STACK, "warm (second up)", second.seconds)


def test_watchdog_restarts_a_hung_engine(first: Up) -> None:
    """The engine core stopped (SIGSTOP): /health stays 200, completions hang; the watchdog's
    failed completions (3 in a row, one every 10 s) restart vLLM, which then serves again."""
    host = first.result["outputs"]["hosts"][0]["name"]
    pid = vllm_main_pid(host)
    started = time.monotonic()
    on_host(host, f"kill -STOP $(pgrep --full '^{ENGINE_CORE}')")
    while vllm_main_pid(host) in (pid, 0):
        assert time.monotonic() - started < WATCHDOG_LIMIT_S, "the watchdog did not restart the hung vLLM"
        time.sleep(2)
    restarted_s = time.monotonic() - started
    log = on_host(host, "journalctl -t vllm-watchdog --no-pager -o cat")
    assert "answers /health but no completion (3 checks in a row): restarting vllm" in log, log
    base = first.result["outputs"]["endpoint"]
    body = json.dumps({"model": "tiny-llama", "prompt": "ok", "max_tokens": 1})
    while True:
        done = tierkit("lab", "exec", lab_name(STACK), "--", "curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
                       "-H", f"Authorization: Bearer {API_KEY}", "-H", "Content-Type: application/json", "-d", body,
                       f"{base}/v1/completions", timeout=60)
        if done.stdout == "200":
            break
        assert time.monotonic() - started < SERVE_AGAIN_LIMIT_S, f"vLLM does not serve again after the restart ({done.stdout})"
        time.sleep(5)
    print(f"watchdog: hung engine restarted after {restarted_s:.0f} s, serving again after {time.monotonic() - started:.0f} s")


def test_down_leaves_nothing(first: Up, find_leftovers: Callable[[str], list[str]]) -> None:
    proc = down_leaves_nothing(STACK, find_leftovers)
    assert proc.stderr.splitlines()[0].startswith("tierkit down: rehearsal (no Pulumi CLI)")
