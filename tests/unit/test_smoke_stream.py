"""One streamed request: the token-chunk fast path agrees with the full JSON parser."""

from __future__ import annotations

import json

import pytest

from tierkit.smoke.sse import StreamCounters
from tierkit.smoke.stream import StreamSink, token_text


def compact(obj: object, ascii_only: bool = True) -> bytes:
    """As vLLM sends it (pydantic's compact JSON)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=ascii_only).encode()


def completion(text: object, **extra: object) -> bytes:
    return compact({"id": "c", "choices": [{"index": 0, "text": text, "logprobs": None}], "usage": None, **extra})


def chat(delta: dict[str, object]) -> bytes:
    return compact({"id": "c", "choices": [{"index": 0, "delta": delta}]})


@pytest.mark.parametrize(
    ("payload", "chat_api", "fast"),
    [
        (completion(" plain"), False, b" plain"),
        (completion(""), False, b""),
        (completion('say "hi"'), False, None),  # escapes: parsed
        (completion("line\nbreak"), False, None),
        (completion("naïve ☃"), False, None),  # json.dumps escapes non-ASCII by default
        (compact({"choices": [{"text": "naïve"}]}, ascii_only=False), False, "naïve".encode()),
        (json.dumps({"choices": [{"text": "spaced"}]}).encode(), False, None),  # not compact: parsed
        (completion('"usage":{'), False, None),  # the pattern inside a string is escaped
        (completion("x", usage={"prompt_tokens": 3, "completion_tokens": 1}), False, None),
        (compact({"choices": [], "usage": {"completion_tokens": 4}}), False, None),
        (compact({"error": {"message": "boom"}}), False, None),
        (chat({"role": "assistant", "content": ""}), True, b""),
        (chat({"content": " tok"}), True, b" tok"),
        (chat({"reasoning_content": "hmm"}), True, b""),
        (chat({"content": None}), True, b""),
    ],
)
def test_fast_path_only_takes_what_it_can_read(payload: bytes, chat_api: bool, fast: bytes | None) -> None:
    assert token_text(payload, b'"content":"' if chat_api else b'"text":"') == fast


@pytest.mark.parametrize("chat_api", [False, True])
def test_sink_text_is_the_same_either_way(chat_api: bool) -> None:
    pieces = [" plain", 'say "hi"', "naïve ☃", "", "tab\there", " end"]
    sink = StreamSink(start=0.0, prompt_len=1, chat=chat_api, counters=StreamCounters())
    sink.on_head(200, {"content-type": "text/event-stream"})
    for i, piece in enumerate(pieces):
        payload = chat({"content": piece}) if chat_api else completion(piece)
        sink.on_body(b"data: " + payload + b"\n\n", 1.0 + i)
    sink.on_body(b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":6}}\n\ndata: [DONE]\n\n', 9.0)
    r = sink.finish(None)
    assert r.success and r.text == "".join(pieces) and r.chunks == 6 and r.output_tokens == 6
    assert r.ttft == 1.0 and r.latency == 6.0 and r.itl == [1.0] * 5


def test_malformed_event_fails_the_request() -> None:
    sink = StreamSink(start=0.0, prompt_len=1, chat=False, counters=StreamCounters())
    sink.on_head(200, {"content-type": "text/event-stream"})
    sink.on_body(b"data: {not json\n\ndata: [DONE]\n\n", 1.0)
    assert sink.finish(None).error == "malformed event: '{not json'"
