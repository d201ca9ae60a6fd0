"""The chat-completions request as the gateway accepts it: parsed and validated once into the one
typed model (shared/chat_request.py), with OpenAI's error for the first thing wrong. Pure."""

from __future__ import annotations

import json
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
    """Parse and validate a request body; the 400 names the offending parameter.

    Beyond OpenAI's rules the gateway has three of its own; request_schema() states them too."""
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


def request_schema(models: list[str], ref_template: str) -> dict[str, Any]:
    """The JSON Schema of what parse_chat_request() accepts and resolve_route() routes: the model's
    own schema, plus the gateway's rules (the models it serves, n = 1, stream_options only with
    stream, top_logprobs only with logprobs). Its definitions are under "$defs".

    `backend` (naming one deployment, README "Upstream pools"), `variables` (a template's values) and
    `session_id` are draftgate's own, not OpenAI's: they are left out of this OpenAI request schema, as
    `metadata.deployment` and `metadata.template_id` are (metadata stays OpenAI's)."""
    schema = ChatCompletionRequest.model_json_schema(ref_template=ref_template)
    properties = schema["properties"]
    for name in ("backend", "variables", "session_id"):  # draftgate's own (shared/chat_request.py DRAFTGATE_FIELDS)
        properties.pop(name, None)
    properties["model"] = {"anyOf": [{"enum": models}, {"type": "null"}], "title": "Model"}
    properties["n"]["anyOf"][0]["maximum"] = 1
    schema["dependentSchemas"] = {
        "stream_options": {"anyOf": [{"properties": {"stream_options": {"type": "null"}}},
                                     {"properties": {"stream": {"const": True}}, "required": ["stream"]}]},
        "top_logprobs": {"anyOf": [{"properties": {"top_logprobs": {"enum": [0, None]}}},
                                   {"properties": {"logprobs": {"const": True}}, "required": ["logprobs"]}]},
    }
    return schema


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


WIRE_INT_MIN, WIRE_INT_MAX = -(2**63), 2**64 - 1  # msgpack's integers


def beyond_the_wire(body: dict[str, Any]) -> InvalidRequest | None:
    """A field the model lets through (vendor extensions, JSON Schemas) holding an integer the
    wire cannot carry; only looked for when encoding failed."""
    path = _huge_int(body, "")
    if path is None:
        return None
    return InvalidRequest(f"Invalid value for '{path}': integers must lie between {WIRE_INT_MIN} and "
                          f"{WIRE_INT_MAX}.", param=path, code="invalid_value")


def _huge_int(value: Any, path: str) -> str | None:
    if type(value) is int:
        return None if WIRE_INT_MIN <= value <= WIRE_INT_MAX else path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _huge_int(item, _step(path, key))
        if found is not None:
            return found
    return None


def param_path(loc: tuple[int | str, ...]) -> str:
    """('messages', 0, 'role=user', 'content') -> 'messages[0].content' (union tags dropped)."""
    path = ""
    for part in loc:
        if isinstance(part, int) or TAG_MARK not in part:
            path = _step(path, part)
    return path


def _step(path: str, key: int | str) -> str:
    """One more step on a parameter path: [0], .name, or ["odd key"] for keys a dot cannot show."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not key or any(c in key for c in '.[]"'):
        return f"{path}[{json.dumps(key)}]"
    return f"{path}.{key}" if path else key


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
