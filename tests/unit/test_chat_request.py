"""The one request model against OpenAI's own statement of the API: the `openai` package's
completion_create_params TypedDicts. Whatever they allow is accepted and reaches the routers as
sent; a missing required field, a wrong type or an unknown part is a 400 naming the parameter."""

from __future__ import annotations

import collections.abc
import json
import re
import typing
from typing import Any, Literal, NotRequired, Required, Union

import jsonschema
import msgpack
import pytest
import typing_extensions
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionContentPartImageParam,
    ChatCompletionContentPartInputAudioParam,
    ChatCompletionContentPartRefusalParam,
    ChatCompletionContentPartTextParam,
    ChatCompletionDeveloperMessageParam,
    ChatCompletionFunctionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionToolMessageParam,
    ChatCompletionUserMessageParam,
    completion_create_params,
)
from openai.types.chat.chat_completion_content_part_param import File as ChatCompletionContentPartFileParam

from services.gateway.openapi import openapi_document
from services.gateway.protocol import parse_chat_request
from shared import fastjson
from shared.chat_request import ChatCompletionRequest
from shared.config import load_config
from shared.errors import InvalidRequest
from shared.messages import ChatRequest, encode

CREATE_PARAMS = completion_create_params.CompletionCreateParamsBase
MESSAGES = {"system": ChatCompletionSystemMessageParam, "developer": ChatCompletionDeveloperMessageParam,
            "user": ChatCompletionUserMessageParam, "assistant": ChatCompletionAssistantMessageParam,
            "tool": ChatCompletionToolMessageParam, "function": ChatCompletionFunctionMessageParam}
PARTS = {"text": ChatCompletionContentPartTextParam, "image_url": ChatCompletionContentPartImageParam,
         "input_audio": ChatCompletionContentPartInputAudioParam, "file": ChatCompletionContentPartFileParam,
         "refusal": ChatCompletionContentPartRefusalParam}
HI = [{"role": "user", "content": "hi"}]


# Example values of an annotation, read off the TypedDicts

def _hints(typed_dict: type) -> dict[str, Any]:
    return typing_extensions.get_type_hints(typed_dict, include_extras=True)


def _required(annotation: Any) -> bool:
    return typing.get_origin(annotation) is Required


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) in (Required, NotRequired):
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_sequence(origin: Any) -> bool:
    return origin in (list, collections.abc.Iterable, collections.abc.Sequence) or \
        getattr(origin, "__name__", "") == "SequenceNotStr"


def variants(annotation: Any) -> list[Any]:
    """JSON values of the annotation: one per union member, literal value and optional key (set
    alone on top of the required ones), so every alternative the type allows is tried once."""
    annotation = _unwrap(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return [None]
    if annotation in (str, bool, int, float):
        return [{str: "x", bool: True, int: 1, float: 0.5}[annotation]]
    if annotation is object:
        return [{"any": [1, "two", None]}]
    if origin is Literal:
        return list(args)
    if origin is Union:
        return [value for member in args for value in variants(member)]
    if _is_sequence(origin):
        return [[value] for value in variants(args[0])]
    if origin in (dict, collections.abc.Mapping):
        return [{"key": value} for value in variants(args[1])]
    if typing_extensions.is_typeddict(annotation):
        return typed_dict_variants(annotation)
    raise AssertionError(f"no example for {annotation!r}")


def typed_dict_variants(typed_dict: type) -> list[dict[str, Any]]:
    hints = _hints(typed_dict)
    base = {key: variants(value)[0] for key, value in hints.items() if _required(value)}
    found = [base]
    for key, value in hints.items():
        alternatives = variants(value)[1:] if _required(value) else variants(value)
        found.extend({**base, key: alternative} for alternative in alternatives)
    return found


def minimal(typed_dict: type) -> dict[str, Any]:
    return typed_dict_variants(typed_dict)[0]


def required_paths(typed_dict: type, prefix: str) -> list[tuple[str, list[str]]]:
    """(param, keys to the field) for every required field, nested ones included."""
    paths = []
    for key, value in _hints(typed_dict).items():
        if not _required(value):
            continue
        paths.append((f"{prefix}.{key}", [key]))
        inner = _unwrap(value)
        if typing_extensions.is_typeddict(inner):
            paths.extend((param, [key, *keys]) for param, keys in required_paths(inner, f"{prefix}.{key}"))
    return paths


def without(value: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    value = json.loads(json.dumps(value))
    target = value
    for key in keys[:-1]:
        target = target[key]
    del target[keys[-1]]
    return value


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


def rejected(body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(raw(body))
    return caught.value


def allowed_parts(role: str) -> set[str]:
    content = _unwrap(_hints(MESSAGES[role]).get("content"))
    names = set()
    for member in typing.get_args(content):
        if _is_sequence(typing.get_origin(member)):
            item = typing.get_args(member)[0]
            for part in typing.get_args(item) or (item,):
                names.add(typing.get_args(_unwrap(_hints(part)["type"]))[0])
    return names


# What OpenAI accepts, the gateway accepts, and passes on as sent

REQUEST_VARIANTS = typed_dict_variants(CREATE_PARAMS)


def test_the_typeddicts_give_many_requests_to_try() -> None:
    assert len(REQUEST_VARIANTS) > 200


@pytest.mark.parametrize("body", REQUEST_VARIANTS, ids=lambda b: ",".join(sorted(b))[-60:])
def test_every_request_openai_accepts_is_accepted_and_forwarded_as_sent(body: dict[str, Any]) -> None:
    request = ChatCompletionRequest.model_validate_json(raw(body))
    assert request.body() == body


@pytest.mark.parametrize(("role", "part"), [(role, part) for role in MESSAGES for part in sorted(allowed_parts(role))])
def test_every_content_part_a_role_allows_is_accepted(role: str, part: str) -> None:
    for variant in typed_dict_variants(PARTS[part]):
        message = {**minimal(MESSAGES[role]), "content": [variant]}
        assert parse_chat_request(raw({"messages": [message]})).body()["messages"] == [message]


def test_optional_fields_may_be_null_and_unset_fields_stay_absent() -> None:
    nullable = [key for key, value in _hints(CREATE_PARAMS).items() if None in variants(value)]
    assert {"temperature", "max_tokens", "logprobs", "stop", "seed", "n"} <= set(nullable)
    body = {"messages": HI, **dict.fromkeys(nullable)}
    assert parse_chat_request(raw(body)).body() == body
    assert parse_chat_request(raw({"messages": HI})).body() == {"messages": HI}


def test_assistant_messages_that_only_call_tools_need_no_content() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    for message in ({"role": "assistant", "tool_calls": [call]}, {"role": "assistant", "content": None,
                                                                   "tool_calls": [call]}):
        parse_chat_request(raw({"messages": [*HI, message, {"role": "tool", "tool_call_id": "c1",
                                                                "content": "done"}]}))


def test_unknown_fields_pass_through_at_every_level() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"a": 1}}],
                          "vendor_message_field": True}],
            "vendor_extension": {"a": [1, {"b": None}]}, "top_k": 40,
            "response_format": {"type": "json_object", "schema": {"type": "object"}}}
    request = parse_chat_request(raw(body))
    assert request.body() == body
    assert request.model_extra == {"vendor_extension": {"a": [1, {"b": None}]}, "top_k": 40}


def test_an_integer_is_a_number_and_stays_equal() -> None:
    request = parse_chat_request(raw({"messages": HI, "temperature": 1, "top_p": 1, "presence_penalty": -2}))
    assert request.temperature == 1.0 and request.body()["temperature"] == 1


def test_a_whole_number_written_with_a_fraction_is_an_integer_as_in_json_schema() -> None:
    body = parse_chat_request(raw({"messages": HI, "max_tokens": 16.0, "seed": -3.0, "logit_bias": {"1": 5.0}})).body()
    assert body == {"messages": HI, "max_tokens": 16, "seed": -3, "logit_bias": {"1": 5}}
    assert type(body["max_tokens"]) is int
    assert rejected({"messages": HI, "max_tokens": 16.5}).code == "invalid_type"
    assert rejected({"messages": HI, "seed": 1e300}).code == "invalid_value"  # beyond 64 bits


def test_typed_fields_read_what_the_client_meant() -> None:
    assert parse_chat_request(raw({"messages": HI, "stream": True})).streaming
    assert not parse_chat_request(raw({"messages": HI, "stream": None})).streaming
    request = parse_chat_request(raw({"messages": HI, "stream": True, "stream_options": {"include_usage": True}}))
    assert request.include_usage
    assert not parse_chat_request(raw({"messages": HI, "stream": True, "stream_options": {}})).include_usage


# What OpenAI refuses is a 400 naming the parameter

@pytest.mark.parametrize("role", sorted(MESSAGES))
def test_a_message_missing_a_required_field_names_it(role: str) -> None:
    for param, keys in required_paths(MESSAGES[role], "messages[0]"):
        error = rejected({"messages": [without(minimal(MESSAGES[role]), keys)]})
        assert (error.param, error.code) == (param, "missing_required_parameter"), error.message


@pytest.mark.parametrize("part", sorted(PARTS))
def test_a_content_part_missing_a_required_field_names_it(part: str) -> None:
    role = "assistant" if part == "refusal" else "user"
    for param, keys in required_paths(PARTS[part], "messages[0].content[0]"):
        message = {"role": role, "content": [without(minimal(PARTS[part]), keys)]}
        error = rejected({"messages": [message]})
        assert (error.param, error.code) == (param, "missing_required_parameter"), error.message


@pytest.mark.parametrize(("role", "part"), [(role, part) for role in MESSAGES if allowed_parts(role)
                                            for part in sorted(set(PARTS) - allowed_parts(role))])
def test_a_content_part_the_role_does_not_allow_is_refused(role: str, part: str) -> None:
    message = {**minimal(MESSAGES[role]), "content": [minimal(PARTS[part])]}
    error = rejected({"messages": [message]})
    assert (error.param, error.code) == ("messages[0].content[0].type", "invalid_value"), error.message


@pytest.mark.parametrize("part", [{"type": "video_url", "video_url": {"url": "x"}}, {"text": "no type"},
                                  {"type": 3, "text": "x"}])
def test_an_unknown_or_untyped_content_part_is_refused(part: dict[str, Any]) -> None:
    error = rejected({"messages": [{"role": "user", "content": [part]}]})
    assert error.param == "messages[0].content[0].type"
    assert error.code == ("missing_required_parameter" if "type" not in part else "invalid_value")


@pytest.mark.parametrize(("slot", "objects"), [("tools", 2), ("response_format", 3), ("tool_choice", 3)])
def test_tool_and_format_objects_missing_a_required_field_name_it(slot: str, objects: int) -> None:
    annotation = _unwrap(_hints(CREATE_PARAMS)[slot])
    if _is_sequence(typing.get_origin(annotation)):
        annotation = typing.get_args(annotation)[0]
    members = [m for m in typing.get_args(annotation) if typing_extensions.is_typeddict(m)]
    assert len(members) == objects
    for member in members:
        prefix = "tools[0]" if slot == "tools" else slot
        for param, keys in required_paths(member, prefix):
            value = without(minimal(member), keys)
            error = rejected({"messages": HI, slot: [value] if slot == "tools" else value})
            assert (error.param, error.code) == (param, "missing_required_parameter"), error.message


WRONG_KINDS = {bool: ["false", 1, 0.0, [True]], int: [1.5, "1", True, {}], float: ["0.5", True, [1]],
               str: [5, True, ["x"], None]}


def _scalar(annotation: Any) -> type | None:
    """bool, int, float or str, when the top-level field is one of those (or null)."""
    members = [m for m in typing.get_args(_unwrap(annotation)) or (_unwrap(annotation),) if m is not type(None)]
    if len(members) == 1 and members[0] in WRONG_KINDS:
        return members[0]
    return None


SCALARS = {key: kind for key, value in _hints(CREATE_PARAMS).items() if (kind := _scalar(value)) is not None}


def test_the_scalar_fields_include_those_the_issue_names() -> None:
    assert {"logprobs", "n", "temperature", "max_tokens", "top_p", "seed", "user"} <= set(SCALARS)


# `stream` is declared on the Streaming / NonStreaming subclasses, as a boolean literal.
@pytest.mark.parametrize(("param", "value"), [(key, value) for key, kind in {**SCALARS, "stream": bool}.items()
                                              for value in WRONG_KINDS[kind] if value is not None])
def test_a_scalar_of_the_wrong_type_is_refused_naming_it(param: str, value: Any) -> None:
    body = {"messages": HI, param: value}
    error = rejected(body)
    assert (error.param, error.code) == (param, "invalid_type"), error.message
    assert error.message.startswith(f"Invalid type for '{param}': expected ")


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"messages": HI, "stream": "false"}, "stream", "invalid_type"),
    ({"messages": HI, "logprobs": "true"}, "logprobs", "invalid_type"),
    ({"messages": HI, "n": "1"}, "n", "invalid_type"),
    ({"messages": HI, "temperature": "0.2"}, "temperature", "invalid_type"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content", "invalid_type"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id", "missing_required_parameter"),
    ({"messages": [{"role": "tool", "content": "42", "tool_call_id": 7}]}, "messages[0].tool_call_id",
     "invalid_type"),
    ({"messages": ["hi"]}, "messages[0]", "invalid_type"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "invalid_value"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role", "missing_required_parameter"),
    ({"messages": HI, "tools": {"type": "function"}}, "tools", "invalid_type"),
    ({"messages": HI, "tools": [{"type": "function", "function": "f"}]}, "tools[0].function", "invalid_type"),
    ({"messages": HI, "tools": [{"type": "retrieval"}]}, "tools[0].type", "invalid_value"),
    ({"messages": HI, "response_format": "json_object"}, "response_format", "invalid_type"),
    ({"messages": HI, "response_format": {"type": "yaml"}}, "response_format.type", "invalid_value"),
    ({"messages": HI, "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
     "response_format.json_schema.name", "missing_required_parameter"),
    ({"messages": HI, "tool_choice": "any"}, "tool_choice", "invalid_value"),
    ({"messages": HI, "stop": 5}, "stop", "invalid_type"),
    ({"messages": HI, "stop": ["a", 5]}, "stop[1]", "invalid_type"),
    ({"messages": HI, "stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
    ({"messages": HI, "temperature": 2.5}, "temperature", "invalid_value"),
    ({"messages": HI, "seed": 2**64}, "seed", "invalid_value"),
    ({"messages": HI, "logit_bias": {"50256": 101}}, "logit_bias.50256", "invalid_value"),
    ({"messages": []}, "messages", "invalid_value"),
    ({}, "messages", "missing_required_parameter"),
    ({"messages": HI, "n": 2}, "n", "unsupported_value"),
    ({"messages": HI, "stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
    ({"messages": HI, "top_logprobs": 2}, "top_logprobs", "invalid_value"),
])
def test_named_mistakes(body: dict[str, Any], param: str, code: str) -> None:
    error = rejected(body)
    assert (error.param, error.code) == (param, code), error.message
    assert error.status == 400 and error.type == "invalid_request_error"


@pytest.mark.parametrize("data", [b'{"messages": [', b"", b"\xff\xfe", b'{"messages": "\\ud800"}', b"[1, 2]",
                                  b"null", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(data)
    assert caught.value.param is None and caught.value.code in ("invalid_json", "invalid_type")


# Nesting: refused where the parser stops, and whatever it lets through every encoder downstream carries

def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("data", [b"[" * 2048 + b"]" * 2048, b'{"a":' * 400 + b"1" + b"}" * 400,
                                  raw({"messages": HI, "vendor": nested(500)}),
                                  raw({"messages": [{"role": "user", "content": [{"type": "text", "text": "x",
                                                                                  "extra": nested(500)}]}]})])
def test_json_nested_too_deeply_is_invalid_json(data: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(data)
    assert caught.value.code == "invalid_json" and "recursion limit" in caught.value.message


def test_the_deepest_body_accepted_still_travels_to_the_router_the_cache_and_the_upstream() -> None:
    depth = 1
    while True:  # the parser's limit, found rather than assumed
        try:
            parse_chat_request(raw({"messages": HI, "vendor": nested(depth + 1)}))
        except InvalidRequest:
            break
        depth += 1
    assert 100 <= depth < 255  # deep enough for real schemas; shallower than orjson's encoder limit
    body = parse_chat_request(raw({"messages": HI, "vendor": nested(depth)})).body()
    message = ChatRequest(request_id="r", reply_to="s", body=body)
    assert msgpack.unpackb(encode(message))["body"] == body  # the wire
    lookup = {"tenant": "", "body": body}  # what the cache gets; the upstream gets the body itself
    assert fastjson.loads(fastjson.dumps(lookup)) == lookup


# The published schema (GET /openapi.json) says what the validator does

def published_schema() -> jsonschema.Draft202012Validator:
    document = openapi_document(load_config(env={}))
    root = {**document, "$ref": "#/components/schemas/ChatCompletionRequest"}
    return jsonschema.Draft202012Validator(root)


def test_the_published_schema_uses_json_schema_keywords_only() -> None:
    text = json.dumps(openapi_document(load_config(env={})))
    assert not re.search(r'"(ge|le|gt|lt)":', text)  # pydantic's names, which JSON Schema ignores


def test_every_request_the_typeddicts_allow_is_valid_in_the_published_schema() -> None:
    validator = published_schema()
    for body in REQUEST_VARIANTS:
        # The gateway's own rules: models it serves; stream_options with stream, top_logprobs with logprobs.
        body = {**body, "model": "auto", "stream": "stream_options" in body or body.get("stream"),
                "logprobs": "top_logprobs" in body or body.get("logprobs")}
        parse_chat_request(raw(body))
        assert not list(validator.iter_errors(body)), body


@pytest.mark.parametrize("body", [{"messages": HI, "n": 2}, {"messages": HI, "stream_options": {}},
                                  {"messages": HI, "top_logprobs": 3}, {"messages": HI, "model": "gpt-9"},
                                  {"messages": HI, "stop": ["a", "b", "c", "d", "e"]},
                                  {"messages": HI, "stream": "no"}, {"messages": HI, "max_tokens": 0}])
def test_what_the_gateway_refuses_the_published_schema_refuses(body: dict[str, Any]) -> None:
    assert list(published_schema().iter_errors(body))
