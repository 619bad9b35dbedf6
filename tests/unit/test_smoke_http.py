"""The HTTP/1.1 client: framing at every split, keep-alive, stale-connection retry, failures."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tierkit.smoke.endpoint import parse_endpoint
from tierkit.smoke.http import ConnectionPool, HttpConnection, build_request, error_message


class Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


class Collect:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.reads = 0

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers

    def on_body(self, data: bytes, now: float) -> None:
        self.body += data
        self.reads += 1


def exchange(pieces: list[bytes], lost: Exception | None | bool = False) -> tuple[HttpConnection, Collect, str | None]:
    """Feed `pieces` to a connection as separate reads; optionally lose the connection after."""

    async def go() -> tuple[HttpConnection, Collect, str | None]:
        conn, sink = HttpConnection(), Collect()
        conn.connection_made(Transport())  # type: ignore[arg-type]
        done = conn.start(b"GET / HTTP/1.1\r\n\r\n", sink)
        for piece in pieces:
            conn.data_received(piece)
        if lost is not False:
            conn.connection_lost(lost)  # type: ignore[arg-type]
        return conn, sink, done.result() if done.done() else "pending"

    return asyncio.run(go())


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"9\r\ndata: a\n\n\r\n"
    b"e;ext=1\r\ndata: bb\n\ndata\r\n"
    b"0\r\nX-Trailer: 1\r\n\r\n"
)


def test_chunked_body_split_at_every_byte_boundary() -> None:
    for cut in range(1, len(CHUNKED)):
        conn, sink, result = exchange([CHUNKED[:cut], CHUNKED[cut:]])
        assert result is None, cut
        assert sink.status == 200 and sink.body == b"data: a\n\ndata: bb\n\ndata", cut
        assert conn.keep_alive


def test_chunked_body_byte_by_byte_streams_partial_chunks() -> None:
    _, sink, result = exchange([bytes([b]) for b in CHUNKED])
    assert result is None and sink.body == b"data: a\n\ndata: bb\n\ndata"
    assert sink.reads > 2  # data is handed on as it arrives, not when a chunk completes


def test_one_whole_chunk_per_read_as_vllm_sends_them() -> None:
    head, _, rest = CHUNKED.partition(b"\r\n\r\n")
    reads = [head + b"\r\n\r\n", b"9\r\ndata: a\n\n\r\n", b"e;ext=1\r\ndata: bb\n\ndata\r\n", b"5\r\nx\r\ny\n\r\n", b"0\r\n\r\n"]
    conn, sink, result = exchange(reads)
    assert result is None and conn.keep_alive
    assert sink.body == b"data: a\n\ndata: bb\n\ndatax\r\ny\n" and sink.reads == 3


def test_content_length_body_and_interim_response() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!"
    conn, sink, result = exchange([raw])
    assert result is None and sink.status == 404 and sink.body == b"nope!" and conn.keep_alive


def test_close_delimited_body_ends_at_clean_close() -> None:
    conn, sink, result = exchange([b"HTTP/1.0 200 OK\r\n\r\nhello ", b"world"], lost=None)
    assert result is None and sink.body == b"hello world" and not conn.keep_alive


def test_connection_close_header_disables_reuse() -> None:
    conn, _, result = exchange([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"])
    assert result is None and not conn.keep_alive and conn.transport.closed  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("pieces", "lost", "reason"),
    [
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"], None, "connection closed by the server mid-response"),
        ([], None, "connection closed by the server before any response"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX"], False, "bad chunked framing in response"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], False, "bad chunked framing in response"),
        ([b"SSH-2.0-OpenSSH\r\n\r\n"], False, "not an HTTP response ('SSH-2.0-OpenSSH')"),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"], ConnectionResetError(104, "reset"), "connection reset by peer"),
    ],
)
def test_failures_have_reasons(pieces: list[bytes], lost: Exception | None | bool, reason: str) -> None:
    _, _, result = exchange(pieces, lost)
    assert result == reason


def test_build_request_frames_body_and_key() -> None:
    from pydantic import SecretStr

    ep = parse_endpoint("http://10.0.0.5:8000/proxy/")
    raw = build_request("POST", ep, "/v1/completions", b'{"x":1}', SecretStr("k3y"))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /proxy/v1/completions HTTP/1.1\r\nHost: 10.0.0.5:8000\r\n")
    assert b"Authorization: Bearer k3y" in head and b"Content-Length: 7" in head and body == b'{"x":1}'


def test_error_message_shapes() -> None:
    assert error_message(400, b'{"error": {"message": "too  long"}}') == "HTTP 400: too long"
    assert error_message(404, b'{"detail": "Not Found"}') == "HTTP 404: Not Found"
    assert error_message(500, b'{"object": "error", "message": "boom"}') == "HTTP 500: boom"
    assert error_message(502, b"<html>Bad Gateway</html>") == "HTTP 502: <html>Bad Gateway</html>"
    assert error_message(503, b"") == "HTTP 503"


# -- the pool, against real loopback sockets ------------------------------------------------

async def _serve(handler) -> tuple[asyncio.Server, int]:  # noqa: ANN001
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_pool_reuses_connections_and_retries_a_stale_one_once() -> None:
    async def go() -> tuple[list[str | None], int]:
        connections = 0

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            served = 0
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                if served == 2:  # the server drops an idle keep-alive connection as a request lands
                    break
                writer.write(OK)
                await writer.drain()
                served += 1
            writer.close()

        server, port = await _serve(handler)
        pool = ConnectionPool(parse_endpoint(f"http://127.0.0.1:{port}"), timeout_s=5)
        results = [await pool.exchange(b"GET / HTTP/1.1\r\n\r\n", Collect()) for _ in range(3)]
        pool.close()
        server.close()
        return results, connections

    results, connections = asyncio.run(go())
    assert results == [None, None, None]
    assert connections == 2  # two requests on the first connection, the retry on a second


def test_pool_timeout_and_refused() -> None:
    async def go() -> tuple[str | None, str | None]:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(10)

        server, port = await _serve(silent)
        slow = await ConnectionPool(parse_endpoint(f"http://127.0.0.1:{port}"), timeout_s=0.2).exchange(b"GET / HTTP/1.1\r\n\r\n", Collect())
        server.close()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        refused = await ConnectionPool(parse_endpoint(f"http://127.0.0.1:{closed_port}"), timeout_s=2).exchange(b"GET / HTTP/1.1\r\n\r\n", Collect())
        return slow, refused

    slow, refused = asyncio.run(go())
    assert slow == "timeout after 0.2 s"
    assert refused == "connection refused"
