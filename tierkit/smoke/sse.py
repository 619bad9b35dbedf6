"""Incremental server-sent-events parsing (the WHATWG event-stream format), tuned for the hot path.

Bytes arrive in arbitrary pieces: an event may span several network reads, and one read may hold
several events. `SseParser.feed` returns the `data` payload of every event completed so far.
Comment lines (`: ping`) and other fields (`event:`, `id:`, `retry:`) are skipped and counted;
CRLF and lone CR line endings are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class StreamCounters:
    """What the parsers of one run saw, summed over every request."""

    events: int = 0  # events with a data payload
    comments: int = 0  # comment lines (keep-alive pings)
    split_events: int = 0  # events that arrived over more than one network read
    other_fields: int = 0  # event:/id:/retry: or unknown field lines
    done: int = 0  # `data: [DONE]` terminators
    usage_only: int = 0  # chunks with usage and empty or null choices

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class SseParser:
    """Feed it bytes; get back complete events' data payloads (several data lines joined by LF)."""

    __slots__ = ("_buf", "_counters")

    def __init__(self, counters: StreamCounters) -> None:
        self._buf = b""
        self._counters = counters

    def feed(self, data: bytes) -> list[bytes]:
        if not self._buf and data[:6] == b"data: " and data[-2:] == b"\n\n":
            payload = data[6:-2]  # the usual read: exactly one single-line event
            if b"\n" not in payload and b"\r" not in payload:
                self._counters.events += 1
                return [payload]
        carried = bool(self._buf)
        buf = self._buf + data if carried else data
        tail = b""
        if b"\r" in buf:
            if buf[-1:] == b"\r":  # maybe the first half of a CRLF: decide when more arrives
                buf, tail = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n\n" not in buf:
            self._buf = buf + tail
            return []
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop() + tail
        if carried:
            self._counters.split_events += 1
        out: list[bytes] = []
        for block in blocks:
            payload = self._payload(block)
            if payload is not None:
                out.append(payload)
        return out

    def flush(self) -> list[bytes]:
        """At the end of the body: an unterminated last event still counts (lenient, like vLLM's)."""
        rest, self._buf = self._buf.rstrip(b"\r\n"), b""
        if not rest:
            return []
        payload = self._payload(rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
        return [] if payload is None else [payload]

    def _payload(self, block: bytes) -> bytes | None:
        if block[:6] == b"data: " and b"\n" not in block:  # the usual shape: one data line
            self._counters.events += 1
            return block[6:]
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if not line:
                continue
            if line[:1] == b":":
                self._counters.comments += 1
                continue
            name, _, value = line.partition(b":")
            if name == b"data":
                data.append(value[1:] if value[:1] == b" " else value)
            else:
                self._counters.other_fields += 1
        if not data:
            return None
        self._counters.events += 1
        return b"\n".join(data)
