"""Where a stream's first token is (services/router/upstreams/pool.py `_head`): the role-only chunks an
OpenAI stream opens with come before it, so a failure after them is still retried and fallen back;
text, a tool call, log-probs, a finish or usage is a token's chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.router.upstreams.errors import UpstreamStreamError
from services.router.upstreams.pool import _head, _preamble


def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}]}


ROLE = chunk({"role": "assistant", "content": ""})
TEXT = chunk({"content": "Paris"})


@pytest.mark.parametrize(("sample", "preamble"), [
    (ROLE, True),
    (chunk({"role": "assistant"}), True),
    (chunk({"role": "assistant", "content": None, "tool_calls": None}), True),
    (TEXT, False),
    (chunk({"role": "assistant", "content": "P"}), False),
    (chunk({"tool_calls": [{"index": 0, "id": "t", "function": {"name": "f", "arguments": ""}}]}), False),
    (chunk({"reasoning_content": "hmm"}), False),
    (chunk({}, finish="stop"), False),
    (chunk({"content": ""}, logprobs={"content": [{"token": "", "logprob": -0.1, "top_logprobs": []}]}), False),
    ({"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 0}}, False),
])
def test_a_chunk_is_preamble_only_when_it_carries_no_token(sample: dict[str, Any], preamble: bool) -> None:
    assert _preamble(sample) is preamble


async def stream(*items: dict[str, Any] | Exception) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        if isinstance(item, Exception):
            raise item
        yield item


async def test_the_head_runs_to_the_first_token_and_leaves_the_rest() -> None:
    chunks = stream(ROLE, ROLE, TEXT, chunk({"content": " is"}))
    assert await _head(chunks) == [ROLE, ROLE, TEXT]
    assert [c async for c in chunks] == [chunk({"content": " is"})]


async def test_a_failure_after_the_role_chunk_is_a_failure_of_the_head() -> None:
    with pytest.raises(UpstreamStreamError):
        await _head(stream(ROLE, UpstreamStreamError("overloaded")))


async def test_a_stream_that_ends_after_its_role_chunk_is_an_empty_answer_and_one_without_chunks_none() -> None:
    assert await _head(stream(ROLE)) == [ROLE]
    with pytest.raises(StopAsyncIteration):
        await _head(stream())
