"""The anthropic provider against literal Messages API traffic: OpenAI bodies in, the API's event streams
(as its streaming reference shows them) back out as OpenAI chunks, and its error shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.router.assemble import assemble_completion
from services.router.upstream import stream_params
from services.router.upstreams.anthropic import PROVIDER, AnthropicDecoder, messages_body
from services.router.upstreams.base import Target
from services.router.upstreams.errors import UpstreamProtocolError, UpstreamStatusError, UpstreamStreamError
from services.router.upstreams.transport import read_chunks
from shared import fastjson

TARGET = Target(name="heavyweight", provider="anthropic", base_url="https://api.anthropic.com", model="claude-x",
                api_key="sk-ant", tier="heavyweight")
WHERE = ("heavyweight", "heavyweight", "claude-x")

# The streaming reference's basic text example, byte for byte in its own spacing.
TEXT_STREAM = b"""event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", \
"role": "assistant", "content": [], "model": "claude-x", "stop_reason": null, "stop_sequence": null, "usage": \
{"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": \
{"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

"""

# The reference's tool use example: text, then a tool_use block whose input streams as partial JSON.
TOOL_STREAM = b"".join(
    f"event: {name}\ndata: {data}\n\n".encode() for name, data in [
        ("message_start", '{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message",'
                          '"role":"assistant","model":"claude-x","stop_sequence":null,"usage":{"input_tokens":472,'
                          '"output_tokens":2,"cache_read_input_tokens":100},"content":[],"stop_reason":null}}'),
        ("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'),
        ("ping", '{"type": "ping"}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
                                '"text":"Okay, let me check."}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":0}'),
        ("content_block_start", '{"type":"content_block_start","index":1,"content_block":{"type":"tool_use",'
                                '"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
                                '"partial_json":""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
                                '"partial_json":"{\\"location\\": \\"San Fra"}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
                                '"partial_json":"ncisco, CA\\"}"}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":1}'),
        ("content_block_start", '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use",'
                                '"id":"toolu_2","name":"now","input":{}}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":2}'),
        ("message_delta", '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
                          '"usage":{"output_tokens":89}}'),
        ("message_stop", '{"type":"message_stop"}'),
    ])


async def read(body: bytes, size: int = 7) -> list[dict[str, Any]]:
    async def blocks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), size):
            yield body[start:start + size]
    return [chunk async for chunk in read_chunks(blocks(), AnthropicDecoder(), WHERE)]


async def test_the_text_example_is_a_role_chunk_two_deltas_a_finish_and_usage() -> None:
    chunks = await read(TEXT_STREAM)
    assert [c["choices"][0]["delta"] if c["choices"] else c["usage"] for c in chunks] == [
        {"role": "assistant", "content": ""}, {"content": "Hello"}, {"content": "!"}, {},
        {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40}]
    assert chunks[3]["choices"][0]["finish_reason"] == "stop"
    assert {c["id"] for c in chunks} == {"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"}
    assert {(c["object"], c["model"]) for c in chunks} == {("chat.completion.chunk", "claude-x")}
    completion = assemble_completion(chunks, None)
    assert completion["choices"][0]["message"]["content"] == "Hello!"


async def test_the_tool_use_example_becomes_openai_tool_calls_with_whole_arguments() -> None:
    chunks = await read(TOOL_STREAM, size=11)
    completion = assemble_completion(chunks, None)
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Okay, let me check."
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"location": "San Francisco, CA"}'}},
        {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}]
    assert completion["usage"] == {"prompt_tokens": 572, "completion_tokens": 89, "total_tokens": 661,
                                   "prompt_tokens_details": {"cached_tokens": 100}}


async def test_an_error_event_mid_stream_is_a_stream_error_with_anthropics_words() -> None:
    cut = TEXT_STREAM.index(b"event: content_block_stop")
    body = TEXT_STREAM[:cut] + (b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
                                b'"message": "Overloaded"}}\n\n')
    with pytest.raises(UpstreamStreamError) as caught:
        await read(body)
    assert caught.value.message == "Overloaded"
    assert caught.value.body == {"message": "Overloaded", "type": "overloaded_error", "param": None,
                                 "code": "overloaded_error"}
    assert (caught.value.tier, caught.value.model) == ("heavyweight", "claude-x")


@pytest.mark.parametrize(("body", "detail"), [
    (TEXT_STREAM[:TEXT_STREAM.index(b"event: message_delta")], "cut short"),
    (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":"x"}\n\n',
     "a content_block_delta event the Messages API does not send"),
    (b"event: message_start\ndata: [1]\n\n", "an event that is not a JSON object"),
    (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
     b'"text":5}}\n\n', "`delta.content` is not a string"),
])
async def test_what_the_api_does_not_send_is_a_protocol_error(body: bytes, detail: str) -> None:
    with pytest.raises(UpstreamProtocolError) as caught:
        await read(body)
    assert detail in caught.value.detail


def test_an_openai_conversation_becomes_system_and_alternating_content_block_turns() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {"role": "user", "content": [{"type": "text", "text": "Weather in SF and the time?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                                     {"type": "image_url", "image_url": {"url": "https://x.example/a.jpg"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"SF"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
        {"role": "user", "content": "Thanks."},
        {"role": "assistant", "content": "You are welcome. "},
    ]
    body = messages_body({"model": "claude-x", "messages": messages, "max_tokens": 50, "temperature": 1.5,
                          "stop": "END", "top_p": 0.9, "user": "u-1", "response_format": {"type": "json_object"},
                          "logprobs": True, "top_logprobs": 5, "seed": 3, "stream": True}, "claude-x")
    assert body == {
        "model": "claude-x", "max_tokens": 50, "stream": True, "system": "Be brief.\n\nUse tools.",
        "temperature": 1.0, "top_p": 0.9, "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in SF and the time?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                {"type": "image", "source": {"type": "url", "url": "https://x.example/a.jpg"}}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "SF"}},
                {"type": "tool_use", "id": "call_2", "name": "now", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "noon"},
                {"type": "text", "text": "Thanks."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "You are welcome."}]}]}


def test_tools_and_tool_choice_map_to_anthropics_and_max_tokens_has_a_default() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                               "parameters": {"type": "object", "properties": {"city": {
                                                   "type": "string"}}}}},
             {"type": "function", "function": {"name": "now"}}]
    base = {"messages": [{"role": "user", "content": "hi"}], "tools": tools}
    body = messages_body(base, "claude-x")
    assert body["max_tokens"] == 4096 and "tool_choice" not in body
    assert body["tools"] == [{"name": "get_weather", "description": "Weather now", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}]
    choices = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
    for ours, theirs in choices.items():
        assert messages_body({**base, "tool_choice": ours}, "m")["tool_choice"] == theirs
    named = {"type": "function", "function": {"name": "now"}}
    assert messages_body({**base, "tool_choice": named, "parallel_tool_calls": False}, "m")["tool_choice"] == {
        "type": "tool", "name": "now", "disable_parallel_tool_use": True}
    assert messages_body({**base, "max_completion_tokens": 9}, "m")["max_tokens"] == 9


def test_the_request_posts_to_v1_messages_with_the_key_and_version_headers() -> None:
    params = stream_params({"messages": [{"role": "user", "content": "hi"}]}, "claude-x")
    for base in ("https://api.anthropic.com", "https://api.anthropic.com/v1/"):
        request = PROVIDER.request(Target(**{**_fields(TARGET), "base_url": base}), params)
        assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {"Content-Type": "application/json", "anthropic-version": "2023-06-01",
                               "x-api-key": "sk-ant"}
    sent = fastjson.loads(request.body)
    assert sent["model"] == "claude-x" and sent["stream"] is True and "stream_options" not in sent
    assert not PROVIDER.logprobs


@pytest.mark.parametrize(("status", "kind", "retryable"), [
    (400, "invalid_request_error", False), (401, "authentication_error", False), (429, "rate_limit_error", True),
    (500, "api_error", True), (529, "overloaded_error", True)])
def test_error_bodies_become_status_errors_in_openais_shape(status: int, kind: str, retryable: bool) -> None:
    body = fastjson.dumps({"type": "error", "error": {"type": kind, "message": "no"}, "request_id": "req_1"})
    error = PROVIDER.error(status, body, {"retry-after": "7"})
    assert isinstance(error, UpstreamStatusError)
    assert (error.status, error.message, error.retryable, error.retry_after_s) == (status, "no", retryable, 7.0)
    assert error.body == {"message": "no", "type": kind, "param": None, "code": kind}


def _fields(target: Target) -> dict[str, Any]:
    return {name: getattr(target, name) for name in Target.__dataclass_fields__}
