"""A lean HTTP/1.1 client on asyncio protocols: the smoke test's hot path.

Each network read is handled in `data_received` with no coroutine switch: the response head is
parsed once, chunked framing is undone in place, and body bytes go straight to a sink with the
read's timestamp. That keeps the client's CPU per output token well below aiohttp-based clients,
so the client is never what limits a measurement. Connections are kept alive and pooled; a reused
connection the server closed while idle is retried once on a fresh one.

A sink is any object with `on_head(status, headers)` and `on_body(data, now)`. An exchange ends
with None (a complete response) or a one-line reason (refused, reset, timeout, closed early, ...).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Protocol

from pydantic import SecretStr

from tierkit.smoke.endpoint import Endpoint

MAX_HEAD_BYTES = 64 * 1024
MAX_ERROR_BODY = 64 * 1024

# Response body framing, and the chunked decoder's states.
_HEAD, _CHUNKED, _LENGTH, _CLOSE, _IDLE = range(5)
_SIZE, _DATA, _DATA_CRLF, _TRAILER = range(4)


class Sink(Protocol):
    def on_head(self, status: int, headers: dict[str, str]) -> None: ...

    def on_body(self, data: bytes, now: float) -> None: ...


def build_request(
    method: str, endpoint: Endpoint, path: str, body: bytes | None = None, api_key: SecretStr | None = None
) -> bytes:
    """The request's bytes, built once (bodies are prepared before a run starts)."""
    lines = [
        f"{method} {endpoint.prefix}{path} HTTP/1.1",
        f"Host: {endpoint.host_header}",
        "User-Agent: tierkit-smoke",
        "Accept: */*",
    ]
    if api_key is not None:
        lines.append(f"Authorization: Bearer {api_key.get_secret_value()}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def error_message(status: int, body: bytes) -> str:
    """`HTTP 400: <the server's message>`, from OpenAI/vLLM/FastAPI error shapes or the raw text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            text = str(err["message"])
        elif isinstance(err, str) and err:
            text = err
        elif data.get("message"):
            text = str(data["message"])
        elif data.get("detail"):
            text = str(data["detail"])
    text = " ".join(text.split())
    return f"HTTP {status}: {text[:300]}" if text else f"HTTP {status}"


def reason_of(exc: BaseException | None) -> str:
    """A short reason for a transport-level failure."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"connection failed ({exc.strerror})"
    return f"connection failed ({type(exc).__name__}: {exc})" if exc else "connection failed"


class HttpConnection(asyncio.Protocol):
    """One TCP connection carrying one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.keep_alive = False
        self.received = 0  # bytes received in the current exchange
        self._sink: Sink | None = None
        self._done: asyncio.Future[str | None] | None = None
        self._mode = _IDLE
        self._buf = b""
        self._left = 0
        self._cstate = _SIZE

    # -- exchange control --------------------------------------------------------------------
    def start(self, request: bytes, sink: Sink) -> asyncio.Future[str | None]:
        assert self.transport is not None and self._mode == _IDLE
        self._sink, self.received, self._buf = sink, 0, b""
        self._mode, self.keep_alive = _HEAD, False
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._done

    def abort(self, reason: str) -> None:
        """End the exchange now with `reason` (timeouts) and drop the connection."""
        self._finish(reason)

    def _finish(self, reason: str | None) -> None:
        done, self._done, self._sink, self._mode = self._done, None, None, _IDLE
        if reason is not None:
            self.keep_alive = False
        if not self.keep_alive and self.transport is not None:
            self.transport.abort() if reason is not None else self.transport.close()
        if done is not None and not done.done():
            done.set_result(reason)

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._done is None:
            return
        if self._mode == _CLOSE and exc is None:
            self._finish(None)
        elif exc is not None:
            self._finish(reason_of(exc))
        elif self.received == 0:
            self._finish("connection closed by the server before any response")
        else:
            self._finish("connection closed by the server mid-response")

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.received += len(data)
        mode = self._mode
        if mode == _CHUNKED:
            self._dechunk(data, now)
        elif mode == _HEAD:
            self._head(data, now)
        elif mode == _LENGTH:
            self._length(data, now)
        elif mode == _CLOSE:
            self._sink.on_body(data, now)  # type: ignore[union-attr]
        elif self.transport is not None:  # bytes nobody asked for: this connection is unusable
            self.keep_alive = False
            self.transport.abort()

    # -- parsing ------------------------------------------------------------------------------
    def _head(self, data: bytes, now: float) -> None:
        buf = self._buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                self._finish("response head too large")
            else:
                self._buf = buf
            return
        head, rest = buf[:end].decode("latin-1"), buf[end + 4 :]
        self._buf = b""
        lines = head.split("\r\n")
        status_line = lines[0].split(" ", 2)
        try:
            status = int(status_line[1])
        except (IndexError, ValueError):
            self._finish(f"not an HTTP response ({lines[0][:80]!r})")
            return
        if 100 <= status < 200:  # interim response: the real head follows
            self._head(rest, now)
            return
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        if status_line[0] == "HTTP/1.1":
            self.keep_alive = "close" not in connection
        else:
            self.keep_alive = "keep-alive" in connection
        self._sink.on_head(status, headers)  # type: ignore[union-attr]
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._mode, self._cstate = _CHUNKED, _SIZE
            if rest:
                self._dechunk(rest, now)
        elif "content-length" in headers or status in (204, 304):
            try:
                self._left = int(headers.get("content-length", "0"))
            except ValueError:
                self._finish("bad Content-Length in response")
                return
            self._mode = _LENGTH
            self._length(rest, now)
        else:
            self._mode, self.keep_alive = _CLOSE, False
            if rest:
                self._sink.on_body(rest, now)  # type: ignore[union-attr]

    def _length(self, data: bytes, now: float) -> None:
        if data:
            take = data[: self._left]
            self._left -= len(take)
            self._sink.on_body(take, now)  # type: ignore[union-attr]
            if len(data) > len(take):
                self.keep_alive = False  # the server sent more than it announced
        if self._left == 0:
            self._finish(None)

    def _dechunk(self, data: bytes, now: float) -> None:
        if not self._buf and self._cstate == _SIZE and data[-2:] == b"\r\n":
            eol = data.find(b"\r\n")  # the usual read: exactly one whole chunk
            try:
                size = int(data[:eol], 16)
            except ValueError:
                size = -1
            if size > 0 and eol + size + 4 == len(data):
                self._sink.on_body(data[eol + 2 : -2], now)  # type: ignore[union-attr]
                return
        buf = self._buf + data if self._buf else data
        pos, n = 0, len(buf)
        sink = self._sink
        while pos < n:
            state = self._cstate
            if state == _DATA:
                end = pos + self._left
                if end >= n:
                    sink.on_body(buf[pos:] if pos else buf, now)  # type: ignore[union-attr]
                    self._left = end - n
                    if self._left == 0:
                        self._cstate = _DATA_CRLF
                    pos = n
                    break
                sink.on_body(buf[pos:end], now)  # type: ignore[union-attr]
                pos, self._cstate = end, _DATA_CRLF
            elif state == _DATA_CRLF:
                if n - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    self._finish("bad chunked framing in response")
                    return
                pos, self._cstate = pos + 2, _SIZE
            else:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if n - pos > 4096:
                        self._finish("bad chunked framing in response")
                        return
                    break
                line, pos = buf[pos:eol], eol + 2
                if state == _TRAILER:
                    if not line:  # the blank line after the last chunk: response complete
                        if pos < n:
                            self.keep_alive = False
                        self._buf = b""
                        self._finish(None)
                        return
                    continue
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    self._finish("bad chunked framing in response")
                    return
                if size == 0:
                    self._cstate = _TRAILER
                else:
                    self._left, self._cstate = size, _DATA
        self._buf = buf[pos:] if pos < n else b""


class ConnectionPool:
    """Keep-alive connections to one endpoint; `exchange` sends one request and feeds a sink."""

    def __init__(self, endpoint: Endpoint, timeout_s: float) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._idle: list[HttpConnection] = []

    async def exchange(self, request: bytes, sink: Sink) -> str | None:
        """Send `request`; None when a whole response arrived, else why not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while self._idle:
            conn = self._idle.pop()
            if conn.lost:
                continue
            reason = await self._attempt(conn, request, sink, deadline)
            if reason is None or conn.received or loop.time() >= deadline:
                return reason
            break  # the server had closed this idle connection: one fresh try below
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(HttpConnection, self.endpoint.host, self.endpoint.port),
                timeout=max(deadline - loop.time(), 0.001),
            )
        except TimeoutError:
            return f"timeout after {self.timeout_s:g} s (connecting)"
        except OSError as exc:
            return reason_of(exc)
        return await self._attempt(conn, request, sink, deadline)

    async def _attempt(self, conn: HttpConnection, request: bytes, sink: Sink, deadline: float) -> str | None:
        loop = asyncio.get_running_loop()
        done = conn.start(request, sink)
        timer = loop.call_at(deadline, conn.abort, f"timeout after {self.timeout_s:g} s")
        try:
            reason = await done
        except asyncio.CancelledError:
            conn.abort("cancelled")
            raise
        finally:
            timer.cancel()
        if reason is None and conn.keep_alive and not conn.lost:
            self._idle.append(conn)
        return reason

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
