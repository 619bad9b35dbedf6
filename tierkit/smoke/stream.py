"""One streamed completion: from response bytes to timings, tokens, text, or a failure reason.

Timing follows vLLM's benchmark (`vllm bench serve`) so figures compare one to one: a chunk whose
`choices` is non-empty is a content chunk; TTFT is the first one's arrival minus the send time,
ITL the gaps between consecutive ones, E2EL the last one's arrival minus the send time. Token
counts come from the final `usage` chunk (`stream_options.include_usage`).

A request succeeds only with HTTP 200, an event stream, at least one content chunk, no error
event and a closing `data: [DONE]`. Anything else fails with a one-line reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tierkit.smoke.http import MAX_ERROR_BODY, error_message
from tierkit.smoke.sse import SseParser, StreamCounters

_loads = json.loads


@dataclass(slots=True)
class RequestResult:
    """What one request did. Times are `time.perf_counter()` seconds; `error` None means success."""

    start: float
    prompt_len: int  # the planned prompt tokens; the server's usage count replaces it when given
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    chunks: int = 0  # content chunks
    output_tokens: int | None = None  # from usage; None when the server sent none
    text: str = ""
    error: str | None = None
    answered: bool = False  # an HTTP response head arrived (the request reached a server)

    @property
    def success(self) -> bool:
        return self.error is None


def _stream_error(event: dict[str, Any]) -> str | None:
    """The message of an error event (`{"error": {...}}` or vLLM's older `{"object": "error"}`)."""
    err = event.get("error")
    if err is None and event.get("object") != "error":
        return None
    if isinstance(err, dict):
        msg = err.get("message") or json.dumps(err)
    elif err is not None:
        msg = str(err)
    else:
        msg = event.get("message") or json.dumps(event)
    return "error event mid-stream: " + " ".join(str(msg).split())[:300]


_CHOICES = b'"choices":[{'


def token_text(payload: bytes, text_key: bytes) -> bytes | None:
    """The raw text of an ordinary token chunk, or None when the full JSON parser must decide.

    Ordinary: a non-empty `choices` list, no usage object, no error, and a text value without
    escapes (a JSON string cannot hold an unescaped quote, so these byte patterns cannot come from
    inside a string). This saves a JSON parse on almost every chunk; anything else is parsed.
    """
    start = payload.find(_CHOICES)
    if start < 0 or b'"usage":{' in payload or b'"error"' in payload:
        return None
    at = payload.find(text_key, start)
    if at < 0:
        return b""  # a choice without text (a role-only or finish chunk)
    at += len(text_key)
    end = payload.find(b'"', at)
    if end < 0 or b"\\" in payload[at:end]:
        return None
    return payload[at:end]


class StreamSink:
    """The `http.Sink` of one streamed request; `finish` turns what arrived into a RequestResult."""

    __slots__ = ("result", "_chat", "_counters", "_sse", "_status", "_body", "_content_type", "_done",
                 "_last", "_parts", "_text_key", "_stream_error", "_now")

    def __init__(self, start: float, prompt_len: int, chat: bool, counters: StreamCounters) -> None:
        self.result = RequestResult(start=start, prompt_len=prompt_len)
        self._chat = chat
        self._counters = counters
        self._sse: SseParser | None = None
        self._status = 0
        self._body: list[bytes] = []
        self._content_type = ""
        self._done = False
        self._last = 0.0
        self._parts: list[bytes] = []  # UTF-8 text pieces
        self._text_key = b'"content":"' if chat else b'"text":"'
        self._stream_error: str | None = None
        self._now = start

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.result.answered = True
        self._status = status
        self._content_type = headers.get("content-type", "")
        if status == 200 and "text/event-stream" in self._content_type:
            self._sse = SseParser(self._counters)

    def on_body(self, data: bytes, now: float) -> None:
        self._now = now
        if self._sse is None:
            if sum(map(len, self._body)) < MAX_ERROR_BODY:
                self._body.append(data)
            return
        for payload in self._sse.feed(data):
            self._event(payload, now)

    def _event(self, payload: bytes, now: float) -> None:
        if self._done or self._stream_error is not None:
            return
        piece = token_text(payload, self._text_key)
        if piece is not None:  # the common token chunk, without a full JSON parse
            self._token(now, piece)
            return
        if payload == b"[DONE]":
            self._done = True
            self._counters.done += 1
            return
        try:
            event = _loads(payload)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self._stream_error = f"malformed event: {payload[:80].decode('utf-8', 'replace')!r}"
            return
        choices = event.get("choices")
        usage = event.get("usage")
        if choices:
            choice = choices[0]
            text = (choice.get("delta") or {}).get("content") if self._chat else choice.get("text")
            self._token(now, text.encode() if isinstance(text, str) else b"")
        elif usage:
            self._counters.usage_only += 1
        if usage:
            tokens = usage.get("completion_tokens")
            if isinstance(tokens, int):
                self.result.output_tokens = tokens
            prompt = usage.get("prompt_tokens")
            if isinstance(prompt, int):
                self.result.prompt_len = prompt
        if not choices and not usage:
            self._stream_error = _stream_error(event)

    def _token(self, now: float, piece: bytes) -> None:
        result = self.result
        if result.chunks:
            result.itl.append(now - self._last)
        else:
            result.ttft = now - result.start
        self._last = now
        result.chunks += 1
        if piece:
            self._parts.append(piece)

    def finish(self, transport_error: str | None) -> RequestResult:
        """Close the books on this request, given how the exchange ended."""
        result = self.result
        if self._sse is not None and transport_error is None:
            for payload in self._sse.flush():
                self._event(payload, self._now)
        result.text = b"".join(self._parts).decode("utf-8", "replace")
        if result.chunks:
            result.latency = self._last - result.start
        result.error = self._failure(transport_error)
        return result

    def _failure(self, transport_error: str | None) -> str | None:
        if self._stream_error is not None:
            return self._stream_error
        if transport_error is not None:
            return transport_error
        if self._status != 200:
            return error_message(self._status, b"".join(self._body))
        if self._sse is None:
            return f"HTTP 200 but not an event stream (Content-Type {self._content_type or 'missing'})"
        if not self._done:
            return "stream ended without data: [DONE]"
        if not self.result.chunks:
            return "stream held no content chunk"
        return None
