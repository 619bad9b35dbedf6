"""tierkit/probe.py: each probe bounded by its timeout, a dead host costs one timeout, and what a
live vLLM answers (version, models with the API key) is read."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tierkit.hosts import Host
from tierkit.probe import ProbeRequest, probe

KEY = "probe-key-7f"


class FakeVllm(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/v1/models" and self.headers.get("Authorization") != f"Bearer {KEY}":
            body, status = {"error": "Unauthorized"}, 401
        else:
            body, status = {"/version": ({"version": "0.32.0"}, 200), "/health": ({}, 200),
                            "/v1/models": ({"data": [{"id": "tiny"}]}, 200)}.get(self.path, ({}, 404))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def vllm() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeVllm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def silent() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def host(name: str, address: str, port: int) -> Host:
    return Host(name=name, address=address, port=port, key_path="/nonexistent")


def test_live_host_and_endpoint(vllm: int) -> None:
    request = ProbeRequest(hosts=[host("a", "127.0.0.1", vllm)], vllm_port=vllm, endpoint=f"http://127.0.0.1:{vllm}")
    report = probe(request, api_key=KEY)
    (a,) = report.hosts
    assert (a.ssh, a.vllm_version, a.models, a.problem) == (True, "0.32.0", ["tiny"], None)
    assert report.endpoint.healthy and report.endpoint.models == ["tiny"]


def test_wrong_key_is_a_problem_not_a_crash(vllm: int) -> None:
    report = probe(ProbeRequest(hosts=[host("a", "127.0.0.1", vllm)], vllm_port=vllm,
                                endpoint=f"http://127.0.0.1:{vllm}"), api_key="wrong")
    assert "401" in (report.hosts[0].problem or "") and not report.endpoint.models


def test_hung_and_dead_hosts_cost_one_timeout(silent: int, vllm: int) -> None:
    request = ProbeRequest(hosts=[host("hung", "127.0.0.1", silent), host("dead", "127.0.0.1", 1)],
                           vllm_port=silent, endpoint=f"http://127.0.0.1:{silent}", timeout_s=1.0)
    started = time.monotonic()
    report = probe(request, api_key=KEY)
    assert time.monotonic() - started < 3.5
    hung, dead = report.hosts
    assert hung.ssh and hung.vllm_version is None and "vLLM at" in (hung.problem or "")
    assert not dead.ssh and (dead.problem or "").startswith("SSH port 1 does not answer")
    assert not report.endpoint.healthy


def test_a_cut_host_costs_one_timeout_not_one_per_port(silent: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host cut off the network: its SSH port's connect and vLLM's answer both time out, at once."""

    def connect_times_out(address: str, port: int, timeout: float) -> bool:
        time.sleep(timeout)
        return False

    monkeypatch.setattr("tierkit.probe._tcp", connect_times_out)
    request = ProbeRequest(hosts=[host("cut", "127.0.0.1", 22)], vllm_port=silent, endpoint=f"http://127.0.0.1:{silent}",
                           timeout_s=1.0)
    started = time.monotonic()
    (cut,) = probe(request, api_key=KEY).hosts
    assert time.monotonic() - started < 1.8
    assert not cut.ssh and (cut.problem or "").startswith("SSH port 22 does not answer; vLLM at")
