"""A cached completion replayed as a stream has a live stream's shape, log-probs included."""

from __future__ import annotations

import copy
import json
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from services.cache.keys import request_keys
from services.gateway.sse import completion_to_chunks
from services.router.assemble import assemble_completion, shape_chunk
from tests.unit.test_assemble import STREAM


def parsed(chunks: list[dict[str, Any]]) -> list[ChatCompletionChunk]:
    return [ChatCompletionChunk.model_validate(json.loads(json.dumps(c))) for c in chunks]


def test_log_probs_replay_token_by_token_exactly_as_they_were_streamed() -> None:
    for top in (0, 2):
        # As OpenAI streams with include_usage: `usage: null` until the usage chunk, which has the fingerprint too.
        live = parsed([{**shape_chunk(c, top), "usage": c.get("usage"), "system_fingerprint": "fp"}
                       for c in copy.deepcopy(STREAM)])
        cached = assemble_completion(copy.deepcopy(STREAM), top)
        assert ChatCompletion.model_validate(cached).choices[0].logprobs is not None
        replayed = parsed(completion_to_chunks(cached, include_usage=True))
        assert [c.model_dump() for c in replayed] == [c.model_dump() for c in live]
        entries = [c.choices[0].logprobs.content for c in replayed[1:3]]  # type: ignore[union-attr]
        assert [len(e[0].top_logprobs) for e in entries] == [top, top]  # type: ignore[index]


def test_without_log_probs_the_content_comes_in_one_chunk() -> None:
    cached = assemble_completion(copy.deepcopy(STREAM), None)
    chunks = parsed(completion_to_chunks(cached, include_usage=False))
    assert [c.choices[0].delta.content for c in chunks] == ["", "Hello world", None]
    assert all(c.choices[0].logprobs is None for c in chunks)
    assert all("usage" not in c.model_fields_set for c in chunks)


def test_log_probs_that_do_not_spell_the_content_ride_on_one_chunk() -> None:
    cached = assemble_completion(copy.deepcopy(STREAM), 1)
    cached["choices"][0]["message"]["content"] = "Hello, world"  # e.g. tokens that are partial bytes
    chunks = parsed(completion_to_chunks(cached, include_usage=False))
    assert [c.choices[0].delta.content for c in chunks] == ["", "Hello, world", None]
    logprobs = chunks[1].choices[0].logprobs
    assert logprobs is not None and [t.token for t in logprobs.content or []] == ["Hello", " world"]


def test_usage_is_null_on_every_chunk_but_the_last_when_asked() -> None:
    chunks = parsed(completion_to_chunks(assemble_completion(copy.deepcopy(STREAM), None), include_usage=True))
    assert all(c.usage is None and "usage" in c.model_fields_set for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5


def test_log_prob_parameters_are_part_of_the_cache_keys() -> None:
    """So a stored answer's log-probs always match the request it serves (trimmed to its top_logprobs)."""
    base = {"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    variants = [base, {**base, "logprobs": True}, {**base, "logprobs": True, "top_logprobs": 2},
                {**base, "logprobs": True, "top_logprobs": 3}]
    keys = [request_keys(body, "tenant") for body in variants]
    assert len({k.exact for k in keys}) == len({k.partition for k in keys}) == len(variants)
    streamed = request_keys({**variants[2], "stream": True, "stream_options": {"include_usage": True}}, "tenant")
    assert streamed.exact == keys[2].exact  # delivery only: a plain answer serves a streamed hit
