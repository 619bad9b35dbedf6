"""A small OpenAI-compatible streaming server on loopback that produces every edge case the smoke
client must survive. It runs its own event loop in a thread, speaks HTTP/1.1 with keep-alive and
writes exact bytes, so tests control how events are framed and split.

The requested model name picks the behaviour (see SCENARIOS); `/v1/models` lists them all.
It also serves vLLM's `/tokenize` and `/detokenize` with a toy tokenizer in which words longer
than five letters are two tokens, so prompt calibration has something to converge on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

SCENARIOS = {
    "ok": "well-formed stream, one token per chunk, usage chunk with empty choices, [DONE]",
    "split": "every chunk written in three pieces, splitting SSE events and chunk framing",
    "comments": "comment pings, an event of only event:/id:/retry: fields, a multi-line data event",
    "crlf": "CRLF line endings",
    "usage-null": "final usage chunk with choices null",
    "no-usage": "no usage chunk (the client must count chunks and say so)",
    "midstream-error": "an error event after three tokens, under HTTP 200",
    "legacy-error": "vLLM's older error event shape ({'object': 'error'})",
    "http-400": "HTTP 400 with an OpenAI error body",
    "http-500": "HTTP 500 with a plain-text body",
    "hang": "headers, then nothing",
    "reset": "two tokens, then a TCP reset",
    "close-early": "two tokens, then a clean close without the last chunk",
    "no-done": "a complete chunked body without data: [DONE]",
    "empty-text": "chunks whose text is empty",
    "identical": "the same text for every prompt",
    "not-sse": "HTTP 200 with a JSON body",
    "content-length": "the event stream sent with Content-Length instead of chunked",
    "close-delimited": "the event stream delimited by closing the connection",
    "slow": "200 ms to first token, 20 ms per token",
    "flaky": "every third request answers HTTP 503",
}

TEMPLATE_TOKENS = 4  # the toy chat template's extra tokens
BOS = 0


class ToyTokenizer:
    """Words <= 5 letters are one token; longer words are two (head, '##' tail)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {"<s>": BOS}
        self.pieces: list[str] = ["<s>"]

    def _id(self, piece: str) -> int:
        if piece not in self.ids:
            self.ids[piece] = len(self.pieces)
            self.pieces.append(piece)
        return self.ids[piece]

    def encode(self, text: str, special: bool) -> list[int]:
        out = [BOS] if special else []
        for word in text.split():
            out += [self._id(word[:3]), self._id("##" + word[3:])] if len(word) > 5 else [self._id(word)]
        return out

    def decode(self, ids: list[int]) -> str:
        text = ""
        for i in ids:
            piece = self.pieces[i]
            if piece == "<s>":
                continue
            text += piece[2:] if piece.startswith("##") else (" " if text else "") + piece
        return text


@dataclass
class Seen:
    bodies: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    connections: int = 0
    active: int = 0  # streams in progress now
    peak: int = 0  # most streams ever in progress at once


class FakeServer:
    def __init__(self, *, owned_by: str = "vllm", tokenize: bool = True, api_key: str | None = None,
                 token_delay_s: float = 0.0005) -> None:
        self.owned_by = owned_by
        self.tokenize = tokenize
        self.api_key = api_key
        self.token_delay_s = token_delay_s
        self.tok = ToyTokenizer()
        self.seen = Seen()
        self._count = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- HTTP ---------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.seen.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                keep = await self._route(method, path, headers, json.loads(body) if body else None, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def _json(self, writer: asyncio.StreamWriter, status: int, obj: Any) -> bool:
        data = json.dumps(obj).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        return True

    async def _route(self, method: str, path: str, headers: dict[str, str], body: Any,
                     writer: asyncio.StreamWriter) -> bool:
        if path.startswith("/v1/"):
            self.seen.auth.append(headers.get("authorization"))
            if self.api_key and headers.get("authorization") != f"Bearer {self.api_key}":
                return await self._json(writer, 401, {"error": {"message": "Unauthorized", "code": 401}})
        if method == "GET" and path == "/v1/models":
            return await self._json(writer, 200, {"object": "list", "data": [
                {"id": name, "object": "model", "owned_by": self.owned_by} for name in SCENARIOS]})
        if path == "/tokenize" and self.tokenize:
            if "messages" in body:
                content = body["messages"][0]["content"]
                ids = [BOS] * TEMPLATE_TOKENS + self.tok.encode(content, special=False)
            else:
                ids = self.tok.encode(body["prompt"], special=body.get("add_special_tokens", True))
            return await self._json(writer, 200, {"count": len(ids), "tokens": ids, "max_model_len": 4096})
        if path == "/detokenize" and self.tokenize:
            return await self._json(writer, 200, {"prompt": self.tok.decode(body["tokens"])})
        if method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            self.seen.bodies.append(body)
            self.seen.active += 1
            self.seen.peak = max(self.seen.peak, self.seen.active)
            try:
                return await self._stream(writer, body, chat=path.endswith("chat/completions"))
            finally:
                self.seen.active -= 1
        return await self._json(writer, 404, {"detail": "Not Found"})

    # -- streaming ----------------------------------------------------------------------------
    async def _stream(self, writer: asyncio.StreamWriter, body: dict[str, Any], chat: bool) -> bool:
        scenario = body["model"]
        self._count += 1
        if "ignore_eos" in body and self.owned_by != "vllm":
            return await self._json(writer, 400, {"error": {"message": "Unrecognized request argument: ignore_eos"}})
        if scenario == "http-400":
            return await self._json(writer, 400, {"error": {"message": "This model's maximum context length is 512 tokens", "code": 400}})
        if scenario == "http-500" or (scenario == "flaky" and self._count % 3 == 0):
            status = 500 if scenario == "http-500" else 503
            text = b"Internal Server Error: engine is dead"
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {len(text)}\r\n\r\n".encode() + text)
            await writer.drain()
            return True
        if scenario == "not-sse":
            return await self._json(writer, 200, {"choices": [{"text": "hello"}]})
        prompt = body["messages"][0]["content"] if chat else body["prompt"]
        prompt_tokens = len(self.tok.encode(prompt, special=not chat)) + (TEMPLATE_TOKENS if chat else 0)
        n = body["max_tokens"]
        events = self._events(scenario, prompt, n, prompt_tokens, chat)
        eol = b"\r\n" if scenario == "crlf" else b"\n"
        payload = [e.replace(b"\n", eol) for e in events]
        if scenario in ("content-length", "close-delimited"):
            whole = b"".join(payload)
            length = f"Content-Length: {len(whole)}\r\n" if scenario == "content-length" else "Connection: close\r\n"
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n{length}\r\n".encode())
            for piece in payload:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(self.token_delay_s)
            return scenario == "content-length"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        if scenario == "hang":
            await asyncio.sleep(3600)
        if scenario == "slow":
            await asyncio.sleep(0.2)
        for index, piece in enumerate(payload):
            if scenario in ("reset", "close-early") and index == 2:
                if scenario == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                else:
                    writer.close()
                return False
            framed = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            if scenario == "split":
                for part in (framed[:3], framed[3 : len(framed) // 2], framed[len(framed) // 2 :]):
                    writer.write(part)
                    await writer.drain()
                    await asyncio.sleep(0.002)
            else:
                writer.write(framed)
                await writer.drain()
                await asyncio.sleep(0.02 if scenario == "slow" else self.token_delay_s)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    def _events(self, scenario: str, prompt: str, n: int, prompt_tokens: int, chat: bool) -> list[bytes]:
        seed = 0 if scenario == "identical" else zlib.crc32(prompt.encode())
        words = [f" w{(seed + i * 7919) % 1000}" for i in range(n)]
        if scenario == "empty-text":
            words = [""] * n
        out: list[bytes] = []
        if chat:
            out.append(_event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}))
        for i, word in enumerate(words):
            if scenario in ("midstream-error", "legacy-error") and i == 3:
                err = ({"error": {"message": "engine core died", "type": "InternalServerError", "code": 500}}
                       if scenario == "midstream-error" else {"object": "error", "message": "engine core died"})
                out.append(_event(err))
                break
            choice = {"index": 0, "delta": {"content": word}} if chat else {"index": 0, "text": word}
            out.append(_event({"id": "cmpl-1", "choices": [choice], "usage": None}))
            if scenario == "comments" and i == 0:
                out.append(b": ping\n\n")
                out.append(b"event: message\nid: 7\nretry: 100\n\n")
        if scenario == "comments":
            usage = {"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n}}
            lines = json.dumps(usage, indent=1).split("\n")  # one event, several data lines
            out.append("".join(f"data: {line}\n" for line in lines).encode() + b"\n")
        elif scenario not in ("no-usage", "midstream-error", "legacy-error"):
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
            out.append(_event({"choices": None if scenario == "usage-null" else [], "usage": usage}))
        if scenario != "no-done":
            out.append(b"data: [DONE]\n\n")
        return out


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
