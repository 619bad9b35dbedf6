"""tierkit/status.py and history.py: what a deploy left for a stack, probed; problems named; the
exit code's basis (`ok`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from test_probe import KEY, FakeVllm

from tierkit import history
from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.paths import StackPaths
from tierkit.spec import load_stack
from tierkit.status import collect

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeVllm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def deployed(state: Path, port: int, passed: bool = True) -> list[Host]:
    state.mkdir(parents=True)
    gates = [{"name": "output_throughput", "measured": 50.0, "op": ">=", "required": 40.0, "unit": "tok/s", "passed": passed}]
    (state / "smoke.json").write_text(json.dumps({"passed": passed, "output_throughput": 50.0, "gates": gates,
                                                  "gate_source": "the plan", "plan_vs_measured": []}))
    history.append(state / "history.jsonl", history.Run(engine="rehearsal", ok=passed, seconds=300,
                                                        steps=[history.StepTime(name="configure", seconds=200)]))
    return [Host(name="h1", address="127.0.0.1", port=port, key_path="/nonexistent")]


def test_everything_answers(tmp_path: Path, vllm: int) -> None:
    hosts = deployed(tmp_path / ".tierkit" / "s", vllm)
    report = collect(load_stack("single-gpu", ROOT), StackPaths(tmp_path, "s"), hosts, vllm, f"http://127.0.0.1:{vllm}")
    assert report.ok, report.problems
    assert report.probe.hosts[0].vllm_version == "0.32.0" and report.probe.hosts[0].models == ["tiny"]
    assert report.last_smoke is not None and report.last_smoke.gates == [
        "output_throughput pass: measured 50 tok/s, required >= 40 tok/s"]
    assert report.plan["tier"] == "single-gpu" and [r.steps[0].name for r in report.runs] == ["configure"]
    assert report.vip_holders is None


def test_a_failed_smoke_and_a_dead_vllm_are_problems(tmp_path: Path, vllm: int) -> None:
    hosts = deployed(tmp_path / ".tierkit" / "s", vllm, passed=False)
    report = collect(load_stack("single-gpu", ROOT), StackPaths(tmp_path, "s"), hosts, 1, f"http://127.0.0.1:{vllm}")
    assert not report.ok
    assert any(p.startswith("h1: vLLM at http://127.0.0.1:1") for p in report.problems)
    assert "smoke: the last smoke gate failed" in report.problems


def test_nothing_deployed_is_one_error_line(tmp_path: Path) -> None:
    with pytest.raises(TierkitError, match=r"run `tierkit up --stack none` first"):
        collect(load_stack("single-gpu", ROOT), StackPaths(tmp_path, "none"), [], 8000, None)


def test_history_keeps_the_last_runs_and_skips_a_torn_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "history.jsonl"
    monkeypatch.setattr(history, "MAX_RUNS", 3)
    for seconds in range(5):
        history.append(path, history.Run(engine="rehearsal", ok=True, seconds=seconds))
    with path.open("a") as f:
        f.write('{"engine": "rehe')
    assert [r.seconds for r in history.load(path)] == [2, 3, 4]
    assert [r.seconds for r in history.load(path, last=2)] == [3, 4]
