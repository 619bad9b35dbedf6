"""The stall drill's client parts: the request it sends, one timed request against a local
server (answered, refused, an error status), and the figures it draws from the samples."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Network

import pytest
from pydantic import SecretStr

from tierkit.lab import stalls
from tierkit.lab.drills import Pair


def pair(api_key: str | None = None) -> Pair:
    lab = type("FakeLab", (), {"subnet": IPv4Network("10.211.9.0/24")})()
    return Pair(lab, "10.211.9.100", 8000, 8001, "tiny-llama", SecretStr(api_key) if api_key else None)  # type: ignore[arg-type]


def test_the_request_is_a_two_token_completion_that_closes_its_connection() -> None:
    request = stalls.completion(pair("sk-test"), "10.211.9.100", 8000).decode()
    head, body = request.split("\r\n\r\n")
    assert head.startswith("POST /v1/completions HTTP/1.1\r\nHost: 10.211.9.100:8000\r\n")
    assert "Connection: close" in head and "Authorization: Bearer sk-test" in head
    assert f"Content-Length: {len(body)}" in head and '"max_tokens": 2' in body and '"model": "tiny-llama"' in body
    assert "Authorization" not in stalls.completion(pair(), "10.211.9.100", 8000).decode()


@pytest.fixture
def server() -> Iterator[dict[str, object]]:
    """A one-thread HTTP server on 127.0.0.1 answering each connection with `status` after `delay_s`."""
    settings: dict[str, object] = {"status": 200, "delay_s": 0.0}
    listener = socket.create_server(("127.0.0.1", 0))
    settings["port"] = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                time.sleep(float(settings["delay_s"]))  # type: ignore[arg-type]
                conn.sendall(f"HTTP/1.1 {settings['status']} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield settings
    listener.close()


def test_one_times_the_first_byte(server: dict[str, object]) -> None:
    server["delay_s"] = 0.2
    sample = stalls.one("127.0.0.1", int(server["port"]), b"GET / HTTP/1.1\r\n\r\n", 3)  # type: ignore[call-overload]
    assert sample.error == "" and sample.ttfb_s is not None and 0.2 <= sample.ttfb_s < 2
    assert sample.connect_s < 0.2


def test_one_counts_an_error_status_and_a_timeout_as_failures(server: dict[str, object]) -> None:
    port = int(server["port"])  # type: ignore[call-overload]
    server["status"] = 503
    assert stalls.one("127.0.0.1", port, b"GET / HTTP/1.1\r\n\r\n", 3) == stalls.Sample(pytest.approx(0, abs=0.5), None, "HTTP 503")
    server["status"], server["delay_s"] = 200, 0.5
    late = stalls.one("127.0.0.1", port, b"GET / HTTP/1.1\r\n\r\n", 0.1)
    assert late.ttfb_s is None and late.error == "TimeoutError"


def test_one_counts_a_refused_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    sample = stalls.one("127.0.0.1", port, b"GET / HTTP/1.1\r\n\r\n", 1)
    assert sample.ttfb_s is None and sample.error == "ConnectionRefusedError"


def test_summary_counts_stalls_and_failures() -> None:
    samples = [stalls.Sample(0.001, t) for t in (0.02, 0.03, 0.04, 0.9, 1.2)]
    samples += [stalls.Sample(0.002, None, "TimeoutError"), stalls.Sample(0.001, None, "HTTP 503"),
                stalls.Sample(0.004, None, "TimeoutError")]
    out = stalls.summarize("VIP", samples, 0.5)
    assert (out.requests, out.failed, out.slow, out.slow_ttfb_s) == (8, 3, 2, [0.9, 1.2])
    assert out.median_s == 0.04 and out.max_s == 1.2 and out.max_connect_s == 0.004
    assert out.errors == {"TimeoutError": 2, "HTTP 503": 1} and out.haproxy == {}
