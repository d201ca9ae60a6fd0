"""Reading an upstream's server-sent events as bytes, whatever the network's block boundaries."""

from __future__ import annotations

import pytest

from services.router.upstream import MAX_LINE_BYTES, sse_data
from services.router.wellformed import MalformedChunk

STREAM = b'data: {"a":1}\n\n: keep-alive comment\n\ndata:{"b":2}\r\n\r\nevent: ignored\ndata: [DONE]\n\n'


def read_in_blocks(stream: bytes, size: int) -> list[bytes]:
    values, pending = [], b""
    for start in range(0, len(stream), size):
        found, pending = sse_data(pending, stream[start:start + size])
        values.extend(found)
    return values


def test_data_values_come_out_whole_for_every_block_size() -> None:
    for size in (1, 2, 3, 7, 16, len(STREAM)):
        assert read_in_blocks(STREAM, size) == [b'{"a":1}', b'{"b":2}', b"[DONE]"], size


def test_an_unfinished_line_waits_for_the_rest() -> None:
    values, pending = sse_data(b"", b'data: {"a":')
    assert values == [] and pending == b'data: {"a":'
    assert sse_data(pending, b"1}\n\n") == ([b'{"a":1}'], b"")


def test_a_line_that_never_ends_is_garbage_not_a_growing_buffer() -> None:
    pending = b"data: " + b"x" * (MAX_LINE_BYTES - 10)
    with pytest.raises(MalformedChunk, match="longer than"):
        sse_data(pending, b"y" * 20)
