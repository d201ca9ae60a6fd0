"""Pure: the shape an upstream chunk must have before the router reads it.

Every chunk is checked once, where it is parsed, so judging, shaping, folding and counting can
rely on it (a number where an object belongs would otherwise surface there as a TypeError and
reach the client as a 500). Only what the router or a client's SDK reads is checked; other
fields pass through untouched. Hot path: exact `type() is` tests, no copies, no models.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

# A logprob: a number (not a bool: its type is bool, which `type() in` tells apart), or null, which
# is how C++ JSON libraries write -inf.
_LOGPROB = (int, float, type(None))
_OPTIONAL_STR = (str, type(None))
_DELTA_STR = frozenset({"content", "role", "refusal"})
_INF = math.inf


class MalformedChunk(ValueError):
    """The upstream sent a chunk the OpenAI chunk schema does not allow; the message says what."""


def parse_chunk(data: bytes) -> dict[str, Any]:
    """One SSE `data:` value as a checked chunk, or MalformedChunk."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        value = _parse_rare(data)
    return check_chunk(value)


def _parse_rare(data: bytes) -> Any:
    """What orjson refuses. Python-based servers send NaN and -Infinity literals, which only the
    stdlib reads (as shared.fastjson does); +Infinity, which no logprob can be, and what else it
    reads beyond orjson (integers past 64 bits, lone surrogates) no reply could carry on, so that
    is garbage like text that is not JSON. (orjson itself never yields an infinity, so the hot
    path need not look for one.)"""
    try:
        value = json.loads(data, parse_constant=_constant, parse_float=_finite_or_negative)
        orjson.dumps(value)
    except (ValueError, TypeError, RecursionError):  # JSONDecodeError, UnicodeDecodeError; JSONEncodeError
        raise MalformedChunk("a data value that is not JSON") from None
    return value


def _constant(name: str) -> float:
    if name == "Infinity":
        raise ValueError("+Infinity")
    return float(name)  # NaN, -Infinity


def _finite_or_negative(text: str) -> float:
    value = float(text)
    if value == _INF:
        raise ValueError("+Infinity")
    return value


def check_chunk(value: Any) -> dict[str, Any]:
    """`value` (a parsed SSE data value) as a chunk, or MalformedChunk."""
    if type(value) is not dict:
        raise MalformedChunk(f"a data value that is a JSON {_kind(value)}, not an object")
    choices = value.get("choices")
    if choices is not None:
        if type(choices) is not list:
            raise MalformedChunk("`choices` is not a list")
        for choice in choices:
            _check_choice(choice)
    usage = value.get("usage")
    if usage is not None and type(usage) is not dict:
        raise MalformedChunk("`usage` is not an object")
    if type(value.get("id")) not in _OPTIONAL_STR or type(value.get("model")) not in _OPTIONAL_STR:
        raise MalformedChunk("`id` or `model` is not a string")
    return value


def _check_choice(choice: Any) -> None:
    if type(choice) is not dict:
        raise MalformedChunk("a choice is not an object")
    get = choice.get
    if type(get("index", 0)) is not int:
        raise MalformedChunk("a choice's `index` is not an integer")
    delta = get("delta")
    if delta is not None:
        if type(delta) is not dict:
            raise MalformedChunk("a choice's `delta` is not an object")
        for key, field in delta.items():  # usually one key: cheaper than a get per known one
            if key in _DELTA_STR:
                if type(field) not in _OPTIONAL_STR:
                    raise MalformedChunk(f"`delta.{key}` is not a string")
            elif key == "tool_calls" and field is not None:
                _check_tool_calls(field)
    if type(get("finish_reason")) not in _OPTIONAL_STR:
        raise MalformedChunk("`finish_reason` is not a string")
    logprobs = get("logprobs")
    if logprobs is not None:
        if type(logprobs) is not dict:
            raise MalformedChunk("a choice's `logprobs` is not an object")
        for key in ("content", "refusal"):
            entries = logprobs.get(key)
            if entries is not None:
                if type(entries) is not list:
                    raise MalformedChunk(f"`logprobs.{key}` is not a list")
                for entry in entries:
                    _check_entry(entry)


def _check_entry(entry: Any) -> None:
    """One token's log-prob: the token, its logprob and (if sent) its alternatives, each alike.

    A missing or null `top_logprobs` is allowed (the token is then not judged); NaN, -inf and null
    carry no mass. Subscripts, not type tests, find what is not an object: cheaper per alternative,
    and every JSON value but an object raises TypeError on them."""
    try:
        if type(entry["token"]) is not str or type(entry["logprob"]) not in _LOGPROB:
            raise MalformedChunk("a log-prob entry lacks a string `token` or a numeric `logprob`")
        alternatives = entry.get("top_logprobs")
        if alternatives is None:
            return
        if type(alternatives) is not list:
            raise MalformedChunk("`top_logprobs` is not a list")
        for alternative in alternatives:
            if type(alternative["logprob"]) not in _LOGPROB or type(alternative["token"]) is not str:
                raise MalformedChunk("a `top_logprobs` item lacks a string `token` or a numeric `logprob`")
    except (TypeError, KeyError):
        raise MalformedChunk("a log-prob entry or `top_logprobs` item is not an object with a `token` and a "
                             "`logprob`") from None


def _check_tool_calls(calls: Any) -> None:
    if type(calls) is not list:
        raise MalformedChunk("`delta.tool_calls` is not a list")
    for call in calls:
        if type(call) is not dict or type(call.get("index", 0)) is not int:
            raise MalformedChunk("a tool call is not an object with an integer `index`")
        function = call.get("function")
        if function is not None and type(function) is not dict:
            raise MalformedChunk("a tool call's `function` is not an object")
        for holder, key in ((call, "id"), (call, "type"), (function or {}, "name"), (function or {}, "arguments")):
            field = holder.get(key)
            if field is not None and type(field) is not str:
                raise MalformedChunk(f"a tool call's `{key}` is not a string")


def has_finished(chunk: dict[str, Any]) -> bool:
    """Whether a (checked) chunk ends a choice."""
    return any(choice.get("finish_reason") for choice in chunk.get("choices") or ())


def _kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "literal"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else type(value).__name__
