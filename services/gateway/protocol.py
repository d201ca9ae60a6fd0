"""The chat-completions request as the gateway accepts it: parsed and validated once into the one
typed model (shared/chat_request.py), with OpenAI's error for the first thing wrong. Pure."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from shared.chat_request import JSON_KIND_ERROR, TAG_MARK, UNION_TAG_ERROR, ChatCompletionRequest
from shared.errors import InvalidRequest

# Deeper JSON is refused by the parser (pydantic's, at 200 levels) as invalid JSON, so nothing
# downstream (msgpack, orjson, the upstream's parser) ever meets a nesting it cannot handle.
_TYPE_ERRORS = {"string_type": "a string", "bool_type": "a boolean", "int_type": "an integer",
                "float_type": "a number", "list_type": "an array", "dict_type": "an object",
                "model_type": "an object", "model_attributes_type": "an object"}


def parse_chat_request(raw: bytes) -> ChatCompletionRequest:
    """Parse and validate a request body; the 400 names the offending parameter."""
    try:
        request = ChatCompletionRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None
    if request.n not in (None, 1):
        raise InvalidRequest("Only n=1 is supported.", param="n", code="unsupported_value")
    if request.stream_options is not None and not request.streaming:
        raise InvalidRequest("stream_options is only allowed when stream is true.", param="stream_options",
                             code="invalid_value")
    if request.top_logprobs and not request.logprobs:
        raise InvalidRequest("top_logprobs requires logprobs to be true.", param="top_logprobs",
                             code="invalid_value")
    return request


def _invalid(exc: ValidationError) -> InvalidRequest:
    errors = exc.errors(include_url=False)
    error = errors[0]
    kind = error["type"]
    if kind == "json_invalid":
        return InvalidRequest("We could not parse the JSON body of your request: "
                              f"{error.get('ctx', {}).get('error', 'invalid JSON')}.", code="invalid_json")
    param = param_path(error["loc"])
    if not param:
        return InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param,
                              code="missing_required_parameter")
    if kind.startswith(f"{UNION_TAG_ERROR}:"):
        return _bad_tag(param, kind.partition(":")[2], error)
    if kind in _TYPE_ERRORS or kind == JSON_KIND_ERROR:
        expected = error["msg"].removeprefix("expected ") if kind == JSON_KIND_ERROR else _TYPE_ERRORS[kind]
        return InvalidRequest(f"Invalid type for '{param}': expected {expected}, but got {json_kind(error['input'])} "
                              "instead.", param=param, code="invalid_type")
    return InvalidRequest(f"Invalid value for '{param}': {error['msg']}.", param=param, code="invalid_value")


def _bad_tag(param: str, key: str, error: ErrorDetails) -> InvalidRequest:
    """A union member chosen by `key` (role, type): missing, the wrong type, or unknown."""
    value = error["input"]
    if not isinstance(value, dict):
        return InvalidRequest(f"Invalid type for '{param}': expected an object, but got {json_kind(value)} instead.",
                              param=param, code="invalid_type")
    param = f"{param}.{key}"
    if key not in value:
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    shown = value[key] if isinstance(value[key], str) else json_kind(value[key])
    return InvalidRequest(f"Invalid value for '{param}': {shown!r}. {error['msg']}.", param=param,
                          code="invalid_value")


def param_path(loc: tuple[int | str, ...]) -> str:
    """('messages', 0, 'role=user', 'content') -> 'messages[0].content' (union tags dropped)."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif TAG_MARK not in part:
            path += f".{part}" if path else part
    return path


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
