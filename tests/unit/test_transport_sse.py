"""The transport's server-sent events, read as bytes whatever the network's block boundaries, and the
checks every provider's stream passes through (a choice, an end, no garbage), without the HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.router.upstreams.errors import UpstreamError, UpstreamProtocolError, UpstreamStreamError
from services.router.upstreams.openai import OpenAIDecoder
from services.router.upstreams.transport import MAX_LINE_BYTES, SseReader, read_chunks, sse_data
from services.router.wellformed import MalformedChunk
from shared import fastjson

# OpenAI's shape (data only, a comment, CRLF), Anthropic's (named events) and a multi-line data value.
STREAM = (b'data: {"a":1}\n\n: keep-alive comment\n\ndata:{"b":2}\r\n\r\n'
          b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
          b"id: 7\nretry: 1000\nevent: split\ndata: {\"c\":\ndata: 3}\n\n"
          b"data: [DONE]\n\n")
EVENTS = [(None, b'{"a":1}'), (None, b'{"b":2}'), ("message_stop", b'{"type":"message_stop"}'),
          ("split", b'{"c":\n3}'), (None, b"[DONE]")]


def read_in_blocks(stream: bytes, size: int) -> list[tuple[str | None, bytes]]:
    reader = SseReader()
    events = []
    for start in range(0, len(stream), size):
        events.extend(reader.feed(stream[start:start + size]))
    return events + reader.end()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, len(STREAM)])
def test_events_come_out_whole_and_named_for_every_block_size(size: int) -> None:
    assert read_in_blocks(STREAM, size) == EVENTS


def test_an_event_waits_for_the_blank_line_that_ends_it() -> None:
    reader = SseReader()
    assert reader.feed(b"event: ping\ndata: {}\n") == []
    assert reader.feed(b"\n") == [("ping", b"{}")]


def test_the_streams_end_completes_an_unfinished_last_event() -> None:
    reader = SseReader()
    assert reader.feed(b'data: {"x":1}\n\ndata: {"y":') == [(None, b'{"x":1}')]
    assert reader.feed(b"2}") == []
    assert reader.end() == [(None, b'{"y":2}')]
    assert reader.end() == []


def test_a_name_without_data_is_no_event_and_does_not_name_the_next() -> None:
    assert read_in_blocks(b"event: ghost\n\ndata: 1\n\n", 4) == [(None, b"1")]


def test_a_line_that_never_ends_is_garbage_not_a_growing_buffer() -> None:
    reader = SseReader()
    reader.feed(b"data: " + b"x" * (MAX_LINE_BYTES - 10))
    with pytest.raises(MalformedChunk, match="longer than"):
        reader.feed(b"y" * 20)
    with pytest.raises(MalformedChunk, match="longer than"):
        sse_data(b"data: " + b"x" * MAX_LINE_BYTES, b"y")


def test_sse_data_gives_the_data_values_of_complete_lines() -> None:
    assert sse_data(b"", b'data: {"a":') == ([], b'data: {"a":')
    assert sse_data(b'data: {"a":', b"1}\n\nevent: x\ndata: 2\n") == ([b'{"a":1}', b"2"], b"")


CHUNK = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"content": "hi"}, "logprobs": None, "finish_reason": None}]}
FINISH = {**CHUNK, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}
USAGE = {**CHUNK, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
WHERE = ("heavyweight", "heavyweight-east", "big-model")


def sse(*values: Any) -> bytes:
    return b"".join(b"data: " + (v if isinstance(v, bytes) else fastjson.dumps(v)) + b"\n\n" for v in values)


async def read(body: bytes, size: int = 5) -> list[dict[str, Any]]:
    async def blocks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), size):
            yield body[start:start + size]
    return [chunk async for chunk in read_chunks(blocks(), OpenAIDecoder(), WHERE, 30.0)]


async def test_a_whole_stream_reads_through_and_stops_at_done() -> None:
    assert await read(sse(CHUNK, FINISH, USAGE, b"[DONE]", CHUNK)) == [CHUNK, FINISH, USAGE]


async def test_a_stream_whose_last_choice_finished_is_whole_without_done() -> None:
    assert await read(sse(CHUNK, FINISH, USAGE)) == [CHUNK, FINISH, USAGE]


@pytest.mark.parametrize(("body", "detail"), [
    (sse(CHUNK), "a stream that ended before [DONE] (cut short)"),
    (sse(CHUNK) + b'data: {"id": "c1", "choi', "a data value that is not JSON"),
    (b'{"id": "x", "object": "chat.completion", "choices": []}', "a response that is not an event stream"),
    (sse(b"[DONE]"), "a stream without any choice"),
    (sse(USAGE, b"[DONE]"), "a stream without any choice"),
    (sse(CHUNK, {**CHUNK, "choices": "all"}), "`choices` is not a list"),
])
async def test_garbage_is_one_protocol_error_naming_tier_deployment_and_model(body: bytes, detail: str) -> None:
    with pytest.raises(UpstreamProtocolError) as caught:
        await read(body)
    assert caught.value.detail == detail
    assert (caught.value.tier, caught.value.deployment, caught.value.model) == WHERE
    assert str(caught.value) == f"heavyweight (heavyweight-east) upstream (big-model) sent {detail}"
    assert not caught.value.retryable


async def test_an_error_object_in_the_stream_is_a_stream_error_placed_like_the_others() -> None:
    with pytest.raises(UpstreamStreamError) as caught:
        await read(sse(CHUNK, {"error": {"message": "overloaded", "type": "server_error"}}))
    assert caught.value.message == "overloaded" and caught.value.body == {"message": "overloaded",
                                                                          "type": "server_error"}
    assert isinstance(caught.value, UpstreamError) and caught.value.tier == "heavyweight"
