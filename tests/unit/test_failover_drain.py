"""The failover role's drain tool (roles/failover/files/tierkit_drain.py) against a fake HAProxy
poller and a fake vLLM /metrics: the agent's answers, and a drain that waits for every HAProxy
to be told and for vLLM's requests in flight, each within its bound."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parents[2] / "roles" / "failover" / "files" / "tierkit_drain.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tierkit_drain", TOOL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


drain_tool = _load()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    state, notes = tmp_path / "state", tmp_path / "notes"
    notes.mkdir()
    return state, notes


@pytest.fixture
def agent(dirs: tuple[Path, Path]) -> Iterator[int]:
    """The agent on 127.0.0.1:<port>, in a thread."""
    state, notes = dirs
    port = free_port()
    loop = asyncio.new_event_loop()
    task = loop.create_task(drain_tool.serve("127.0.0.1", port, state / drain_tool.FLAG, notes))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.01)
    yield port
    loop.call_soon_threadsafe(task.cancel)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def ask(port: int) -> str:
    """What HAProxy's agent check reads: one line, then the agent closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        return s.makefile().readline().strip()


class Poller:
    """A HAProxy polling the agent every 50 ms."""

    def __init__(self, port: int) -> None:
        self.port, self.stop = port, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            ask(self.port)
            time.sleep(0.05)

    def __enter__(self) -> Poller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def metrics() -> Iterator[dict[str, object]]:
    """A vLLM /metrics whose running requests fall by one per scrape from state['running']."""
    state: dict[str, object] = {"running": 3, "scrapes": 0, "falls": True}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            state["scrapes"] = int(state["scrapes"]) + 1  # type: ignore[call-overload]
            running = int(state["running"])  # type: ignore[call-overload]
            body = (f"# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                    f'vllm:num_requests_running{{engine="0",model_name="tiny"}} {running}.0\n'
                    f'vllm:num_requests_waiting{{engine="0",model_name="tiny"}} 0.0\n').encode()
            if state["falls"]:
                state["running"] = max(0, running - 1)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    yield state
    server.shutdown()


def test_the_agent_answers_ready_then_drain_and_notes_whom_it_told(agent: int, dirs: tuple[Path, Path]) -> None:
    state, notes = dirs
    assert ask(agent) == "ready"
    assert not list(notes.iterdir())
    drain_tool.raise_flag(state, notes, ["127.0.0.1"])
    assert ask(agent) == "drain"
    deadline = time.monotonic() + 5  # the agent notes it after the answer has gone out
    while not (notes / "told-127.0.0.1").exists():
        assert time.monotonic() < deadline, "the agent never noted whom it told"
        time.sleep(0.01)
    drain_tool.ready(state)
    assert ask(agent) == "ready"
    drain_tool.ready(state)  # lowering a lowered flag is fine


def test_drain_waits_for_the_balancer_then_for_requests_in_flight(
        agent: int, dirs: tuple[Path, Path], metrics: dict[str, object], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    state, notes = dirs
    (notes / "told-127.0.0.1").touch()  # a stale note from an earlier drain does not count
    monkeypatch.setenv("MAINPID", "1234")
    with Poller(agent):
        started = time.monotonic()
        assert drain_tool.drain(state, notes, ["127.0.0.1"], str(metrics["url"]), notice_timeout=5, grace=0,
                                timeout=10) == 0
        took = time.monotonic() - started
    err = capsys.readouterr().err
    assert "told to drain" in err and "127.0.0.1" in err and "not asking" not in err
    assert "no request in flight" in err
    assert metrics["running"] == 0 and int(metrics["scrapes"]) >= 4  # type: ignore[call-overload]
    assert took < 5
    assert (state / drain_tool.FLAG).exists()  # stays up until the next start


def test_drain_is_bounded_when_a_balancer_never_asks_and_requests_never_end(
        agent: int, dirs: tuple[Path, Path], metrics: dict[str, object], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    state, notes = dirs
    metrics["falls"] = False
    monkeypatch.setenv("MAINPID", "1234")
    with Poller(agent):
        started = time.monotonic()
        assert drain_tool.drain(state, notes, ["127.0.0.1", "192.0.2.7"], str(metrics["url"]),
                                notice_timeout=0.5, grace=0, timeout=1.5) == 0
        took = time.monotonic() - started
    err = capsys.readouterr().err
    assert "not asking (down or unreachable): 192.0.2.7" in err
    assert "3 request(s) still in flight after 1.5 s" in err
    assert 1.4 < took < 3


def test_drain_of_a_stopped_vllm_only_raises_the_flag(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    state, notes = dirs
    monkeypatch.delenv("MAINPID", raising=False)
    started = time.monotonic()
    assert drain_tool.drain(state, notes, ["192.0.2.7"], "http://127.0.0.1:9/metrics", notice_timeout=5,
                            grace=1, timeout=10) == 0
    assert time.monotonic() - started < 0.5
    assert (state / drain_tool.FLAG).exists()


def test_drain_stops_waiting_when_vllm_no_longer_answers(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    state, notes = dirs
    monkeypatch.setenv("MAINPID", "1234")
    started = time.monotonic()
    assert drain_tool.drain(state, notes, [], f"http://127.0.0.1:{free_port()}/metrics", notice_timeout=5,
                            grace=0, timeout=10) == 0
    assert time.monotonic() - started < 1


def test_in_flight_sums_running_and_waiting_and_skips_comments() -> None:
    text = ('# HELP vllm:num_requests_running x\n# TYPE vllm:num_requests_running gauge\n'
            'vllm:num_requests_running{engine="0",model_name="m"} 2.0\n'
            'vllm:num_requests_waiting{engine="0",model_name="m"} 1.0\n'
            'vllm:num_requests_running_total_fake 7.0\n')

    class Response:
        def __enter__(self) -> Response:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def read(self) -> bytes:
            return text.encode()

    original = drain_tool.urllib.request.urlopen
    drain_tool.urllib.request.urlopen = lambda url, timeout: Response()
    try:
        assert drain_tool.in_flight("http://x/metrics") == 3
    finally:
        drain_tool.urllib.request.urlopen = original
