"""The fake upstream's Anthropic and Gemini wires, pure: requests checked as the real APIs check them,
answers shaped as the official SDKs' types say, and the OpenAI wire's tool calls.

Every answer is validated against the provider SDK's own pydantic models (anthropic, google-genai,
openai), so a field the fake misspells fails here rather than in a provider's decoder.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from google.genai import types as gtypes
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from tests.fakes import anthropic_wire, gemini_wire, wire
from tests.fakes.anthropic_wire import AnthropicError
from tests.fakes.garbage import DATA_MODES
from tests.fakes.gemini_wire import GeminiError
from tests.fakes.scripts import Script, ToolCall, confident, entropy_bits, planned, uncertain

HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
USER = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = ToolCall("get_weather", {"city": "Paris", "unit": "celsius"})
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def _anthropic(body: dict[str, Any], headers: dict[str, str] | None = None) -> anthropic_wire.Request:
    return anthropic_wire.parse_request(HEADERS if headers is None else headers, json.dumps(body).encode())[1]


def _anthropic_refusal(body: dict[str, Any], headers: dict[str, str] | None = None) -> AnthropicError:
    with pytest.raises(AnthropicError) as caught:
        _anthropic(body, headers)
    return caught.value


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": "fake-heavy", "max_tokens": 64, "messages": USER, **fields}


def _sse(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every server-sent event in an Anthropic stream."""
    events = []
    for block in data.decode().split("\n\n"):
        if block:
            name, payload = block.split("\n")
            assert name.startswith("event: ") and payload.startswith("data: ")
            events.append((name[7:], json.loads(payload[6:])))
    return events


def _validate(name: str, data: dict[str, Any]) -> None:
    """As the SDK's event types say (it drops `ping` before parsing, so ping is checked by hand)."""
    if name == "ping":
        assert data == {"type": "ping"}
    else:
        EVENTS.validate_python(data)


def _anthropic_stream(script: Script, **fields: Any) -> list[tuple[str, dict[str, Any]]]:
    frames = anthropic_wire.frames(_anthropic(_body(stream=True, **fields)), script, "msg_fake_1")
    return _sse(frames.head + b"".join(frames.units) + frames.tail)


# --- Anthropic: requests ------------------------------------------------------------------------------

def test_anthropic_needs_a_key_then_a_version() -> None:
    refused = _anthropic_refusal(_body(), {"anthropic-version": "2023-06-01"})
    assert (refused.status, refused.kind) == (401, "authentication_error")
    refused = _anthropic_refusal(_body(), {"x-api-key": "k"})
    assert (refused.status, refused.kind, refused.message) == (400, "invalid_request_error",
                                                               "anthropic-version: header is required")
    assert _anthropic_refusal(_body(), {**HEADERS, "anthropic-version": "latest"}).status == 400
    assert _anthropic(_body(), {"authorization": "Bearer k", "anthropic-version": "2023-06-01"}).model == "fake-heavy"


@pytest.mark.parametrize("field", ["logprobs", "top_logprobs", "stream_options", "n", "response_format", "stop"])
def test_anthropic_refuses_openai_only_fields(field: str) -> None:
    refused = _anthropic_refusal(_body(**{field: True}))
    assert refused.message == f"{field}: Extra inputs are not permitted"


@pytest.mark.parametrize("missing", ["model", "max_tokens", "messages"])
def test_anthropic_requires_model_max_tokens_and_messages(missing: str) -> None:
    body = _body()
    del body[missing]
    assert _anthropic_refusal(body).message == f"{missing}: Field required"


def test_anthropic_refuses_a_system_turn_and_unknown_roles() -> None:
    system = [{"role": "system", "content": "Be brief."}, *USER]
    assert "top-level `system` parameter" in _anthropic_refusal(_body(messages=system)).message
    tool = [*USER, {"role": "tool", "content": "42"}]
    assert _anthropic_refusal(_body(messages=tool)).message == "messages.1.role: Input should be 'user' or 'assistant'"


def test_anthropic_empty_content_only_in_a_final_assistant_turn() -> None:
    empty_middle = [*USER, {"role": "assistant", "content": ""}, {"role": "user", "content": "Go on."}]
    assert "non-empty content" in _anthropic_refusal(_body(messages=empty_middle)).message
    assert _anthropic(_body(messages=[*USER, {"role": "assistant", "content": ""}])).messages[-1]["content"] == ""
    blank_block = [{"role": "user", "content": [{"type": "text", "text": ""}]}]
    assert _anthropic_refusal(_body(messages=blank_block)).message == "messages: text content blocks must be non-empty"


def test_anthropic_prefill_may_not_end_in_whitespace() -> None:
    assert _anthropic(_body(messages=[*USER, {"role": "assistant", "content": "The capital is"}]))
    refused = _anthropic_refusal(_body(messages=[*USER, {"role": "assistant", "content": "The capital is "}]))
    assert refused.message == "messages: final assistant content cannot end with trailing whitespace"


def _tool_turns(answer_id: str = "toolu_1") -> list[dict[str, Any]]:
    return [*USER,
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                              {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": answer_id, "content": "21 C"}]}]


def test_anthropic_tool_use_must_be_answered_in_the_next_turn() -> None:
    assert _anthropic(_body(messages=_tool_turns())).prompt_tokens == 6 + 1 + 2
    refused = _anthropic_refusal(_body(messages=_tool_turns("toolu_other")))
    assert refused.message.startswith("messages.1: `tool_use` ids were found without `tool_result` blocks")
    unanswered = [*_tool_turns()[:2], {"role": "user", "content": "Well?"}]
    assert "toolu_1" in _anthropic_refusal(_body(messages=unanswered)).message
    orphan = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}]
    assert "unexpected `tool_use_id`" in _anthropic_refusal(_body(messages=orphan)).message


def test_anthropic_tools_are_checked_as_custom_tools() -> None:
    good = {"name": "get_weather", "description": "Weather.", "input_schema": {"type": "object", "properties": {}}}
    assert _anthropic(_body(tools=[good], tool_choice={"type": "tool", "name": "get_weather"}))
    assert _anthropic(_body(tools=[{"type": "web_search_20250305", "name": "web_search"}]))
    openai_shaped = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    assert "does not match any of the expected tags" in _anthropic_refusal(_body(tools=[openai_shaped])).message
    no_schema = {"name": "get_weather"}
    assert _anthropic_refusal(_body(tools=[no_schema])).message == "tools.0.custom.input_schema: Field required"
    parameters = {"name": "get_weather", "parameters": {"type": "object"}, "input_schema": {"type": "object"}}
    assert "Extra inputs" in _anthropic_refusal(_body(tools=[parameters])).message
    assert "pattern" in _anthropic_refusal(_body(tools=[{**good, "name": "get weather"}])).message
    assert _anthropic_refusal(_body(tool_choice={"type": "required"})).status == 400
    assert _anthropic_refusal(_body(temperature=1.5)).status == 400


def test_anthropic_counts_prompt_words_in_system_and_turns() -> None:
    request = _anthropic(_body(system=[{"type": "text", "text": "Be very brief."}]))
    assert request.prompt_tokens == 3 + 6


# --- Anthropic: answers -------------------------------------------------------------------------------

def test_anthropic_stream_is_the_documented_event_flow() -> None:
    events = _anthropic_stream(confident("Paris is the capital."))
    names = [name for name, _ in events]
    assert names == ["message_start", "content_block_start", "ping", *["content_block_delta"] * 4,
                     "content_block_stop", "message_delta", "message_stop"]
    for name, data in events:
        assert data["type"] == name
        _validate(name, data)
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] == 6
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "Paris is the capital."
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 4


def test_anthropic_stream_tool_use_blocks_follow_the_text() -> None:
    script = Script(tokens=["Let", " me", " check."], tool_calls=(WEATHER, ToolCall("get_time", {})))
    events = _anthropic_stream(script)
    starts = [d for n, d in events if n == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [(0, "text"), (1, "tool_use"),
                                                                           (2, "tool_use")]
    assert starts[1]["content_block"] == {"type": "tool_use", "id": "toolu_fake_1_0", "name": "get_weather",
                                          "input": {}}
    for index, call in ((1, WEATHER), (2, ToolCall("get_time", {}))):
        partial = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta" and d["index"] == index]
        assert partial[0] == "" and json.loads("".join(partial)) == call.arguments
    assert [d["index"] for n, d in events if n == "content_block_stop"] == [0, 1, 2]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    for name, data in events:
        _validate(name, data)


def test_anthropic_units_are_tokens_and_tool_pieces() -> None:
    script = Script(tokens=["a", " b"], tool_calls=(WEATHER,))
    frames = anthropic_wire.frames(_anthropic(_body(stream=True)), script, "msg_fake_1")
    assert len(frames.units) == 2 + len(WEATHER.pieces())
    only_tool = anthropic_wire.frames(_anthropic(_body(stream=True)), Script(tokens=[], tool_calls=(WEATHER,)), "m")
    names = [n for n, _ in _sse(only_tool.head + b"".join(only_tool.units) + only_tool.tail)]
    assert names[:3] == ["message_start", "ping", "content_block_start"]


def test_anthropic_max_tokens_cuts_the_text_and_drops_tool_calls() -> None:
    script = Script(tokens=["a", " b", " c"], tool_calls=(WEATHER,))
    request = _anthropic(_body(max_tokens=2))
    whole = anthropic_wire.message(request, script, "msg_fake_1")
    assert whole["content"] == [{"type": "text", "text": "a b"}] and whole["stop_reason"] == "max_tokens"
    Message.model_validate(whole)


def test_anthropic_whole_message_has_text_and_tool_use_blocks() -> None:
    call = ToolCall("get_weather", {"city": "Oslo"}, id="toolu_x")
    whole = anthropic_wire.message(_anthropic(_body()), Script(tokens=["On", " it."], tool_calls=(call,)), "msg_fake_7")
    assert whole["content"] == [{"type": "text", "text": "On it."},
                                {"type": "tool_use", "id": "toolu_x", "name": "get_weather", "input": {"city": "Oslo"}}]
    assert whole["stop_reason"] == "tool_use" and whole["usage"]["output_tokens"] == 2 + len(call.pieces())
    message = Message.model_validate(whole)
    assert message.id == "msg_fake_7" and message.role == "assistant"


@pytest.mark.parametrize(("finish", "reason"), [("stop", "end_turn"), ("length", "max_tokens"),
                                                ("content_filter", "refusal"), ("stop_sequence", "stop_sequence")])
def test_anthropic_stop_reasons(finish: str, reason: str) -> None:
    assert anthropic_wire.stop_reason(finish) == reason


@pytest.mark.parametrize(("status", "kind"), [(400, "invalid_request_error"), (401, "authentication_error"),
                                              (403, "permission_error"), (404, "not_found_error"),
                                              (413, "request_too_large"), (429, "rate_limit_error"),
                                              (500, "api_error"), (504, "timeout_error"), (529, "overloaded_error"),
                                              (418, "invalid_request_error"), (502, "api_error")])
def test_anthropic_error_shapes(status: int, kind: str) -> None:
    body = anthropic_wire.error_body(status, "boom", "req_1")
    assert body == {"type": "error", "error": {"type": kind, "message": "boom"}, "request_id": "req_1"}
    if status != 413:  # documented, but not (yet) in the SDK's union of error objects
        ErrorResponse.model_validate(body)
    [(name, data)] = _sse(anthropic_wire.error_event(status, "boom"))
    assert name == "error" and data == {"type": "error", "error": {"type": kind, "message": "boom"}}


def test_anthropic_garbage_values_exist_for_its_modes_only() -> None:
    for mode in ("not_json", "number", "array", "string", "delta_not_object", "missing_fields"):
        value = anthropic_wire.bad_value(mode)
        assert value is not None
        with pytest.raises(Exception):  # noqa: B017 - any of JSON or schema errors
            EVENTS.validate_python(json.loads(value))
    assert anthropic_wire.bad_value("top_logprobs_not_objects") is None


# --- Gemini: requests ---------------------------------------------------------------------------------

def _contents(text: str = "What is the capital of France?") -> list[dict[str, Any]]:
    return [{"role": "user", "parts": [{"text": text}]}]


def _gemini(body: dict[str, Any], target: str = "fake-drafter:streamGenerateContent",
            query: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> gemini_wire.Request:
    return gemini_wire.parse_request({"x-goog-api-key": "k"} if headers is None else headers,
                                     {"alt": "sse"} if query is None else query, target, json.dumps(body).encode())[1]


def _gemini_refusal(body: dict[str, Any], **kw: Any) -> GeminiError:
    with pytest.raises(GeminiError) as caught:
        _gemini(body, **kw)
    return caught.value


def test_gemini_needs_a_key_in_the_header_or_the_query() -> None:
    refused = _gemini_refusal({"contents": _contents()}, headers={})
    assert refused.status == 403 and "unregistered callers" in refused.message
    assert _gemini({"contents": _contents()}, headers={}, query={"key": "k", "alt": "sse"}).sse


def test_gemini_methods_and_stream_formats() -> None:
    assert _gemini({"contents": _contents()}).stream
    plain = _gemini({"contents": _contents()}, target="models/fake-drafter:generateContent", query={})
    assert (plain.model, plain.stream, plain.sse) == ("fake-drafter", False, False)
    assert _gemini_refusal({"contents": _contents()}, target="fake-drafter:countWords").status == 404


def test_gemini_reads_either_spelling_and_refuses_unknown_names() -> None:
    body = {"contents": _contents(), "system_instruction": {"parts": [{"text": "Be brief."}]},
            "generation_config": {"max_output_tokens": 3, "response_logprobs": True, "logprobs": 5}}
    request = _gemini(body)
    assert (request.max_tokens, request.logprobs, request.top_k, request.prompt_tokens) == (3, True, 5, 6 + 2)
    refused = _gemini_refusal({"contents": _contents(), "messages": USER})
    assert refused.message == 'Invalid JSON payload received. Unknown name "messages": Cannot find field.'
    refused = _gemini_refusal({"contents": _contents(), "generationConfig": {"max_tokens": 5}})
    assert refused.message == ('Invalid JSON payload received. Unknown name "max_tokens" at \'generation_config\': '
                               'Cannot find field.')


@pytest.mark.parametrize("role", ["assistant", "system", "tool"])
def test_gemini_roles_are_user_and_model(role: str) -> None:
    contents = [*_contents(), {"role": role, "parts": [{"text": "Paris."}]}]
    assert _gemini_refusal({"contents": contents}).message == "Please use a valid role: user, model."


def test_gemini_contents_and_parts_must_hold_something() -> None:
    assert "contents is not specified" in _gemini_refusal({"contents": []}).message
    assert "parts must not be empty" in _gemini_refusal({"contents": [{"role": "user", "parts": []}]}).message
    two = [{"role": "user", "parts": [{"text": "a", "functionCall": {"name": "f"}}]}]
    assert "oneof field 'data'" in _gemini_refusal({"contents": two}).message
    content_string = [{"role": "user", "content": "hi"}]
    assert "Unknown name \"content\"" in _gemini_refusal({"contents": content_string}).message


def _call_turns(answers: int = 1) -> list[dict[str, Any]]:
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    answer = {"functionResponse": {"name": "get_weather", "response": {"temperature": 21}}}
    return [*_contents(), {"role": "model", "parts": [call]}, {"role": "user", "parts": [answer] * answers}]


def test_gemini_function_turns_come_in_order() -> None:
    assert _gemini({"contents": _call_turns()}).messages[-2]["role"] == "assistant"
    assert "number of function response parts" in _gemini_refusal({"contents": _call_turns(2)}).message
    answer_first = [_call_turns()[2]]
    assert "comes immediately after a function call turn" in _gemini_refusal({"contents": answer_first}).message
    call_twice = [*_call_turns()[:2], _call_turns()[1]]
    assert "after a user turn or after a function response turn" in _gemini_refusal({"contents": call_twice}).message


def _declare(**declaration: Any) -> dict[str, Any]:
    return {"contents": _contents(), "tools": [{"functionDeclarations": [{"name": "get_weather", **declaration}]}]}


def test_gemini_function_declarations_are_checked() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "array",
                                                                                     "items": {"type": "INTEGER"}}},
              "required": ["city"]}
    assert _gemini({**_declare(parameters=schema), "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}})
    assert "Invalid function name" in _gemini_refusal(_declare(name="get weather")).message
    strict = {**schema, "$schema": "http://json-schema.org/draft-07/schema#"}
    assert 'Unknown name "$schema"' in _gemini_refusal(_declare(parameters=strict)).message
    nested = {"type": "object", "properties": {"city": {"type": "string", "examples": ["Paris"]}}}
    assert "parameters.properties[city].value" in _gemini_refusal(_declare(parameters=nested)).message
    empty = {"type": "object", "properties": {}}
    assert "should be non-empty for OBJECT type" in _gemini_refusal(_declare(parameters=empty)).message
    union = {"type": "object", "properties": {"city": {"type": ["string", "null"]}}}
    assert "google.ai.generativelanguage.v1beta.Type" in _gemini_refusal(_declare(parameters=union)).message
    lower_mode = {"contents": _contents(), "toolConfig": {"functionCallingConfig": {"mode": "auto"}}}
    assert "FunctionCallingConfig.Mode" in _gemini_refusal(lower_mode).message


def test_gemini_logprobs_need_response_logprobs_and_a_small_count() -> None:
    refused = _gemini_refusal({"contents": _contents(), "generationConfig": {"logprobs": 5}})
    assert "response_logprobs" in refused.message
    too_many = {"contents": _contents(), "generationConfig": {"responseLogprobs": True, "logprobs": 21}}
    assert "[0, 20]" in _gemini_refusal(too_many).message
    assert _gemini_refusal({"contents": _contents(), "generationConfig": {"temperature": 3}}).status == 400
    six_stops = {"contents": _contents(), "generationConfig": {"stopSequences": list("abcdef")}}
    assert _gemini_refusal(six_stops).status == 400


# --- Gemini: answers ----------------------------------------------------------------------------------

def _gemini_chunks(request: gemini_wire.Request, script: Script) -> list[dict[str, Any]]:
    frames = gemini_wire.frames(request, script, "r1")
    data = frames.head + b"".join(frames.units) + frames.tail
    if not request.sse:
        return json.loads(data)
    blocks = data.split(b"\r\n\r\n")
    assert blocks[-1] == b""
    return [json.loads(b.removeprefix(b"data: ")) for b in blocks[:-1]]


LOGPROBS = {"contents": _contents(), "generationConfig": {"responseLogprobs": True, "logprobs": 5}}


def test_gemini_stream_chunks_carry_tokens_logprobs_and_running_usage() -> None:
    script = uncertain("Maybe it is Lyon.", bits=1.5)
    chunks = _gemini_chunks(_gemini(LOGPROBS), script)
    assert len(chunks) == 4
    for i, chunk in enumerate(chunks):
        gtypes.GenerateContentResponse.model_validate(chunk)
        candidate = chunk["candidates"][0]
        assert candidate["content"] == {"parts": [{"text": script.tokens[i]}], "role": "model"}
        assert chunk["usageMetadata"]["candidatesTokenCount"] == i + 1
        assert chunk["usageMetadata"]["totalTokenCount"] == 6 + i + 1
        result = candidate["logprobsResult"]
        top = [c["logProbability"] for c in result["topCandidates"][0]["candidates"]]
        assert len(top) == 5 and top == sorted(top, reverse=True)
        assert entropy_bits(top) == pytest.approx(1.5, abs=1e-6)
        assert result["chosenCandidates"] == [{"token": script.tokens[i], "logProbability": top[0]}]
        assert ("finishReason" in candidate) == (i == 3)
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_gemini_array_stream_is_one_json_array() -> None:
    request = _gemini({"contents": _contents()}, query={})
    chunks = _gemini_chunks(request, confident("Paris is the capital."))
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == "Paris is the capital."
    assert all("logprobsResult" not in c["candidates"][0] for c in chunks)


def test_gemini_logprobs_only_chosen_without_a_top_count() -> None:
    request = _gemini({"contents": _contents(), "generationConfig": {"responseLogprobs": True}})
    result = _gemini_chunks(request, confident("Paris."))[0]["candidates"][0]["logprobsResult"]
    assert "topCandidates" not in result and result["chosenCandidates"][0]["token"] == "Paris."
    assert _gemini_chunks(_gemini(LOGPROBS), confident("Paris.", logprobs=False))[0]["candidates"][0].keys() \
        == {"content", "index", "finishReason"}


def test_gemini_function_calls_are_whole_parts_after_the_text() -> None:
    script = Script(tokens=["Checking."], tool_calls=(WEATHER,))
    chunks = _gemini_chunks(_gemini({"contents": _contents()}), script)
    assert chunks[1]["candidates"][0]["content"]["parts"] == [{"functionCall": {"name": "get_weather",
                                                                                "args": WEATHER.arguments}}]
    assert chunks[1]["candidates"][0]["finishReason"] == "STOP"
    whole = gemini_wire.response(_gemini({"contents": _contents()}, target="m:generateContent"), script, "r")
    parsed = gtypes.GenerateContentResponse.model_validate(whole)
    assert parsed.text == "Checking."
    assert parsed.function_calls is not None and parsed.function_calls[0].args == WEATHER.arguments


def test_gemini_whole_answer_with_logprobs_and_max_tokens() -> None:
    body = {**LOGPROBS, "generationConfig": {**LOGPROBS["generationConfig"], "maxOutputTokens": 2}}
    whole = gemini_wire.response(_gemini(body), uncertain("One two three.", bits=2.0), "r")
    candidate = whole["candidates"][0]
    assert candidate["content"]["parts"] == [{"text": "One two"}] and candidate["finishReason"] == "MAX_TOKENS"
    assert len(candidate["logprobsResult"]["chosenCandidates"]) == 2
    assert candidate["avgLogprobs"] == pytest.approx(candidate["logprobsResult"]["logProbabilitySum"] / 2)
    assert whole["usageMetadata"]["candidatesTokenCount"] == 2
    gtypes.GenerateContentResponse.model_validate(whole)


def test_gemini_empty_answer_still_finishes() -> None:
    [chunk] = _gemini_chunks(_gemini({"contents": _contents()}), Script(tokens=[]))
    assert chunk["candidates"][0]["content"]["parts"] == [{"text": ""}]
    assert chunk["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize(("finish", "reason"), [("stop", "STOP"), ("length", "MAX_TOKENS"),
                                                ("content_filter", "SAFETY"), ("recitation", "RECITATION")])
def test_gemini_finish_reasons(finish: str, reason: str) -> None:
    assert gemini_wire.finish_reason(finish) == reason


def test_gemini_error_shapes() -> None:
    assert gemini_wire.error_body(429, "slow down", 1.5) == {"error": {
        "code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]}}
    statuses = {s: gemini_wire.error_body(s, "x")["error"]["status"] for s in (400, 403, 404, 500, 503, 504, 529)}
    assert statuses == {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 500: "INTERNAL",
                        503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED", 529: "INTERNAL"}


def _candidate(value: Any) -> Any:
    return value["candidates"][0]


BROKEN: dict[str, Any] = {
    "number": lambda v: v == 42, "array": lambda v: v == [1], "string": lambda v: v == "x",
    "choices_not_list": lambda v: isinstance(v["candidates"], dict),
    "delta_not_object": lambda v: isinstance(_candidate(v)["content"], str),
    "logprobs_not_object": lambda v: _candidate(v)["logprobsResult"] == 5,
    "content_not_list": lambda v: isinstance(_candidate(v)["logprobsResult"]["chosenCandidates"], dict),
    "top_logprobs_not_objects": lambda v: _candidate(v)["logprobsResult"]["topCandidates"][0]["candidates"]
    == [-0.1, -2.3],
    "logprob_not_number": lambda v: _candidate(v)["logprobsResult"]["chosenCandidates"][0]["logProbability"]
    == "high",
    "missing_fields": lambda v: _candidate(v)["logprobsResult"]["chosenCandidates"] == [{}],
}


@pytest.mark.parametrize("mode", sorted(DATA_MODES))
def test_gemini_has_a_form_of_every_garbage_data_mode(mode: str) -> None:
    sample = gemini_wire.sample_chunk(_gemini(LOGPROBS), confident("Paris."), "r")
    gtypes.GenerateContentResponse.model_validate(sample)
    bad = gemini_wire.bad_data(mode, sample)
    if mode == "not_json":
        with pytest.raises(ValueError):
            json.loads(bad)
    else:
        assert BROKEN[mode](json.loads(bad))


# --- scripts and the OpenAI wire's tool calls ---------------------------------------------------------

def test_tool_call_pieces_rejoin_to_the_arguments() -> None:
    assert "".join(WEATHER.pieces()) == WEATHER.json and len(WEATHER.pieces()) == 3
    assert ToolCall("now").pieces() == ["{}"]
    assert Script(tokens=[], tool_calls=(WEATHER,)).finish == "tool_calls"
    assert Script(tokens=[], tool_calls=(WEATHER,), finish_reason="length").finish == "length"
    assert planned(Script(tokens=["a", "b"], tool_calls=(WEATHER,)), 1) == (["a"], "length", ())
    with pytest.raises(ValueError, match="stream_error"):
        Script(tokens=["a"], stream_error=200)


def _openai_shape(**kw: Any) -> wire.Shape:
    return wire.Shape(**{"model": "fake-heavy", "logprobs": False, "top_k": 0, "include_usage": False,
                         "max_tokens": None, **kw})


def test_openai_wire_streams_tool_calls_after_the_text() -> None:
    script = Script(tokens=["Checking."], tool_calls=(WEATHER, ToolCall("get_time", {}, id="call_t")))
    plan = wire.render(script, _openai_shape())
    chunks = [ChatCompletionChunk.model_validate(json.loads(wire.sse("c", 1, c)[6:])) for c in plan.tokens]
    assert chunks[0].choices[0].delta.content == "Checking."
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks[1:]:
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": delta.id or "", "name": "", "arguments": ""})
            assert delta.function is not None
            entry["name"] += delta.function.name or ""
            entry["arguments"] += delta.function.arguments or ""
    assert calls == {0: {"id": "call_fake_0", "name": "get_weather", "arguments": WEATHER.json},
                     1: {"id": "call_t", "name": "get_time", "arguments": "{}"}}
    final = ChatCompletionChunk.model_validate(json.loads(wire.sse("c", 1, plan.final)[6:]))
    assert final.choices[0].finish_reason == "tool_calls"


def test_openai_wire_whole_answer_has_tool_calls() -> None:
    plan = wire.render(Script(tokens=[], tool_calls=(WEATHER,)), _openai_shape())
    completion = ChatCompletion.model_validate(json.loads(wire.whole("c", 1, wire.usage(1, 3), plan.whole)))
    message = completion.choices[0].message
    assert message.content is None and completion.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.id == "call_fake_0" and call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == WEATHER.arguments  # type: ignore[union-attr]


def test_openai_wire_without_tool_calls_is_unchanged() -> None:
    plan = wire.render(confident("Paris."), _openai_shape())
    assert len(plan.tokens) == 1 and "tool_calls" not in plan.whole
    assert json.loads("{" + plan.whole)["choices"][0]["message"]["content"] == "Paris."
    assert math.isfinite(len(plan.final))
