"""SSE parsing: events split at every byte, CRLF/CR line endings, comments, fields, flush."""

from __future__ import annotations

import pytest

from tierkit.smoke.sse import SseParser, StreamCounters

STREAM = (
    b'data: {"a":1}\n\n'
    b": ping\n\n"
    b"event: message\nid: 3\nretry: 10\n\n"
    b'data: {"b":\ndata: 2}\n\n'
    b"data:[DONE]\n\n"
)
PAYLOADS = [b'{"a":1}', b'{"b":\n2}', b"[DONE]"]


def feed_all(chunks: list[bytes]) -> tuple[list[bytes], StreamCounters]:
    counters = StreamCounters()
    parser = SseParser(counters)
    out: list[bytes] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out + parser.flush(), counters


def test_whole_stream_in_one_read() -> None:
    out, c = feed_all([STREAM])
    assert out == PAYLOADS
    assert (c.events, c.comments, c.other_fields, c.split_events) == (3, 1, 3, 0)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_split_position_gives_the_same_events(eol: bytes) -> None:
    stream = STREAM.replace(b"\n", eol)
    for cut in range(1, len(stream)):
        out, c = feed_all([stream[:cut], stream[cut:]])
        assert out == PAYLOADS, (eol, cut)
        assert c.events == 3 and c.comments == 1


def test_byte_by_byte_counts_split_events() -> None:
    out, c = feed_all([bytes([b]) for b in STREAM])
    assert out == PAYLOADS
    assert c.split_events == 5  # all five blocks (events, the ping, the field-only block) spanned reads


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    out, _ = feed_all([b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n"])
    assert out == [b"x", b"y"]


def test_unterminated_last_event_is_kept_on_flush() -> None:
    out, _ = feed_all([b"data: a\n\ndata: [DONE]"])
    assert out == [b"a", b"[DONE]"]


def test_data_without_space_and_empty_data_line() -> None:
    out, _ = feed_all([b"data:x\n\ndata\n\n"])
    assert out == [b"x", b""]
