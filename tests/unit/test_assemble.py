"""Chunk shaping and folding a stream into one chat.completion."""

from __future__ import annotations

import copy
from typing import Any

from openai.types.chat import ChatCompletion

from services.router.assemble import assemble_completion, content_tokens, is_usage_chunk, shape_chunk


def entry(token: str, logprob: float = -0.1, alternatives: int = 3) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": None,
            "top_logprobs": [{"token": f"{token}{i}", "logprob": logprob - i, "bytes": None}
                             for i in range(alternatives)]}


def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: list | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
            "system_fingerprint": "fp", "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                                    "logprobs": {"content": logprobs} if logprobs else None}]}


STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hello"}, logprobs=[entry("Hello")]),
    chunk({"content": " world"}, logprobs=[entry(" world")]),
    chunk({}, finish="stop"),
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m", "choices": [],
     "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
]


def test_assembles_text_usage_and_metadata() -> None:
    completion = assemble_completion(copy.deepcopy(STREAM), None)
    parsed = ChatCompletion.model_validate(completion)
    assert parsed.choices[0].message.content == "Hello world"
    assert parsed.choices[0].message.role == "assistant"
    assert parsed.choices[0].finish_reason == "stop"
    assert parsed.choices[0].logprobs is None
    assert parsed.usage is not None and parsed.usage.total_tokens == 5
    assert (parsed.id, parsed.created, parsed.model, parsed.system_fingerprint) == ("chatcmpl-1", 7, "m", "fp")


def test_assembled_completions_are_exactly_what_the_sdk_model_dumps() -> None:
    tool_stream = [chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                              "function": {"name": "f", "arguments": "{}"}}]}),
                   chunk({}, finish="tool_calls")]
    for stream, top in ((STREAM, None), (STREAM, 2), (tool_stream, None)):
        completion = assemble_completion(copy.deepcopy(stream), top)
        assert ChatCompletion.model_validate(completion).model_dump(mode="json", exclude_unset=True) == completion


def test_assembles_logprobs_trimmed_to_what_the_client_asked() -> None:
    completion = assemble_completion(copy.deepcopy(STREAM), 1)
    content = completion["choices"][0]["logprobs"]["content"]
    assert [item["token"] for item in content] == ["Hello", " world"]
    assert all(len(item["top_logprobs"]) == 1 for item in content)


def test_assembles_tool_calls_from_fragments() -> None:
    stream = [
        chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                    "function": {"name": "get_", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "weather", "arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, finish="tool_calls"),
    ]
    message = assemble_completion(stream, None)["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [{"id": "call_1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]


def test_shape_chunk_strips_or_trims_logprobs() -> None:
    stripped = shape_chunk(copy.deepcopy(STREAM[1]), None)
    assert stripped["choices"][0]["logprobs"] is None
    trimmed = shape_chunk(copy.deepcopy(STREAM[1]), 2)
    assert len(trimmed["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 2


def test_usage_chunks_and_token_counts() -> None:
    assert is_usage_chunk(STREAM[-1]) and not is_usage_chunk(STREAM[1])
    assert [content_tokens(c) for c in STREAM] == [0, 1, 1, 0, 0]
    assert content_tokens(chunk({"content": "no logprobs"})) == 1
