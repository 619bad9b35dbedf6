"""A real HAProxy polling the failover role's drain agent (roles/failover/files/tierkit_drain.py)
with the role's agent-check settings: the server turns DRAIN when the flag goes up, takes no new
request while its request in flight finishes, and is UP again when the flag comes down."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "roles" / "failover" / "files" / "tierkit_drain.py"

pytestmark = [pytest.mark.tools,
              pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (scripts/setup.sh installs it)")]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def backend() -> Iterator[tuple[int, list[str]]]:
    """A vLLM stand-in answering every request with 200 after 0.5 s; `served` logs each path."""
    served: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/slow":
                time.sleep(1.5)
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], served
    server.shutdown()


def status(stats_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=5) as r:
        rows = [line.split(",") for line in r.read().decode().splitlines()]
    return next(row[17] for row in rows if row[:2] == ["tierkit_vllm", "node"])


def wait_status(stats_port: int, wanted: str, timeout_s: float = 10) -> float:
    start = time.monotonic()
    while (now := status(stats_port)) != wanted:
        assert time.monotonic() - start < timeout_s, f"still {now}, not {wanted}"
        time.sleep(0.05)
    return time.monotonic() - start


def test_haproxy_drains_the_node_while_the_flag_is_up(tmp_path: Path, backend: tuple[int, list[str]]) -> None:
    backend_port, served = backend
    agent_port, front_port, stats_port = free_port(), free_port(), free_port()
    state, notes = tmp_path / "state", tmp_path / "notes"
    notes.mkdir()
    config = tmp_path / "haproxy.cfg"
    config.write_text(f"""global
    maxconn 100
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 1000ms
frontend fe
    bind 127.0.0.1:{front_port}
    default_backend tierkit_vllm
backend tierkit_vllm
    option httpchk
    http-check send meth POST uri /check ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server check inter 200ms fall 2 rise 2 agent-check agent-port {agent_port} agent-inter 200ms
    server node 127.0.0.1:{backend_port}
listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
""")
    agent = subprocess.Popen([sys.executable, str(TOOL), "--state-dir", str(state), "--notes-dir", str(notes),
                              "serve", "--address", "127.0.0.1", "--port", str(agent_port)])
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                wait_status(stats_port, "UP")
                break
            except (OSError, StopIteration, AssertionError):
                assert time.monotonic() < deadline, "HAProxy never had the node UP"
                time.sleep(0.1)
        in_flight: list[int] = []
        slow = threading.Thread(target=lambda: in_flight.append(
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{front_port}/slow", data=b"x"), timeout=10).status))
        slow.start()
        time.sleep(0.2)  # the slow request is on the node
        drained = subprocess.run(
            [sys.executable, str(TOOL), "--state-dir", str(state), "--notes-dir", str(notes), "drain",
             "--balancer", "127.0.0.1", "--metrics", f"http://127.0.0.1:{free_port()}/metrics",
             "--notice-timeout", "2", "--grace", "0", "--timeout", "5"],
            env={"MAINPID": "1"}, capture_output=True, text=True, timeout=30)
        assert "told to drain" in drained.stderr and "not asking" not in drained.stderr, drained.stderr
        assert status(stats_port) == "DRAIN (agent)"
        with pytest.raises(urllib.error.HTTPError) as refused:  # no other server: HAProxy has none for it
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{front_port}/new", data=b"x"), timeout=5)
        assert refused.value.code == 503
        slow.join(10)
        assert in_flight == [200] and "/new" not in served  # the request in flight finished; no new one came
        subprocess.run([sys.executable, str(TOOL), "--state-dir", str(state), "--notes-dir", str(notes), "ready"], check=True)
        wait_status(stats_port, "UP", 5)
    finally:
        haproxy.terminate()
        agent.terminate()
        haproxy.wait(10)
        agent.wait(10)
