"""Pure: the Anthropic Messages API's wire format for the fake upstream (`POST /v1/messages`).

Built from Anthropic's API reference (Messages, Streaming Messages, Errors) and the official SDK's
types: the request is checked as the real API checks it (a key in `x-api-key` or as a bearer token,
the `anthropic-version` header,
required `model` / `max_tokens` / `messages`, no extra top-level fields, roles, content blocks,
every `tool_use` answered by a `tool_result` in the next message, no trailing whitespace after a
prefilled assistant turn), so a provider that translates wrongly gets the 400 the real API gives.
Answers are a `message` object, or the event stream message_start, content_block_start, ping,
content_block_delta (text_delta / input_json_delta), content_block_stop, message_delta (stop_reason,
usage), message_stop; errors are `{"type": "error", "error": {"type", "message"}, "request_id"}`,
also as an `error` event inside a 200 stream.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.fakes.scripts import Frames, Script, ToolCall, planned

# API versions are dates: 2023-06-01 is the one documented for the Messages API, the SDK sends newer ones.
_VERSION = re.compile(r"^20\d\d-\d\d-\d\d$")
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 409: "conflict_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}
# Script.finish_reason (OpenAI's words) -> stop_reason; anything else is taken as Anthropic's own word.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
TOP_LEVEL = frozenset({"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
                       "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
                       "container", "mcp_servers", "context_management", "output_config", "inference_geo",
                       "cache_control", "speed", "diagnostics"})
BLOCK_TYPES = frozenset({"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
                         "search_result", "server_tool_use", "web_search_tool_result", "container_upload"})
TOOL_KEYS = frozenset({"type", "name", "description", "input_schema", "cache_control", "strict", "input_examples",
                       "defer_loading", "allowed_callers", "eager_input_streaming"})
TOOL_CHOICES = frozenset({"auto", "any", "tool", "none"})
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_SERVER_TOOL = re.compile(r"^[a-z_]+_\d{8}$")  # versioned server tools: web_search_20250305, ...


class AnthropicError(Exception):
    """A request the real API refuses: its HTTP status, error type and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = error_type(status)
        self.message = message


@dataclass(frozen=True)
class Request:
    """What the fake needs from a valid Messages request."""

    model: str
    max_tokens: int
    stream: bool
    messages: list[dict[str, Any]]  # user/assistant turns; State.pick reads them as it reads OpenAI's
    prompt_tokens: int


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def _bad(path: str, message: str) -> AnthropicError:
    return AnthropicError(400, f"{path}: {message}")


def api_key(headers: Mapping[str, str]) -> str | None:
    """The credential: `x-api-key`, or a bearer token (the official SDK's newer releases send API keys so)."""
    bearer = headers.get("authorization", "")
    return headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else None) or None


def _check_headers(headers: Mapping[str, str]) -> None:
    if api_key(headers) is None:
        raise AnthropicError(401, "x-api-key header is required")
    version = headers.get("anthropic-version")
    if not version:
        raise AnthropicError(400, "anthropic-version: header is required")
    if not _VERSION.match(version):
        raise AnthropicError(400, f"anthropic-version: invalid version {version!r}")


def _text_of(content: Any) -> str:
    """The words a prompt part carries: strings, text blocks, tool results' text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    words = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            words.append(str(block.get("text", "")))
        elif isinstance(block, dict) and block.get("type") == "tool_result":
            words.append(_text_of(block.get("content")))
    return " ".join(words)


def _check_block(path: str, block: Any, role: str) -> None:
    if not isinstance(block, dict):
        raise _bad(path, "Input should be a valid dictionary")
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        raise _bad(f"{path}.type", f"Input tag {kind!r} found using 'type' does not match any of the expected tags")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise _bad(f"{path}.text", "Field required")
        if not block["text"]:
            raise _bad("messages", "text content blocks must be non-empty")
    elif kind == "tool_use":
        if role != "assistant":
            raise _bad(path, "tool_use blocks can only be in assistant messages")
        for key, want in (("id", str), ("name", str), ("input", dict)):
            if not isinstance(block.get(key), want):
                raise _bad(f"{path}.{key}", "Field required")
    elif kind == "tool_result":
        if role != "user":
            raise _bad(path, "tool_result blocks can only be in user messages")
        if not isinstance(block.get("tool_use_id"), str):
            raise _bad(f"{path}.tool_use_id", "Field required")
        if not isinstance(block.get("content", ""), str | list):
            raise _bad(f"{path}.content", "Input should be a valid string or list")


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _ids(content: Any, kind: str, key: str) -> list[str]:
    return [b[key] for b in _blocks(content) if b.get("type") == kind]


def _check_tool_pairs(messages: list[dict[str, Any]]) -> None:
    """Every tool_use is answered in the very next (user) message, and every tool_result answers one."""
    for i, message in enumerate(messages):
        asked = _ids(message["content"], "tool_use", "id") if message["role"] == "assistant" else []
        following = messages[i + 1]["content"] if i + 1 < len(messages) else None
        answered = set(_ids(following, "tool_result", "tool_use_id")) if following is not None else set()
        missing = [t for t in asked if t not in answered]
        if missing and following is not None:
            raise _bad(f"messages.{i}", f"`tool_use` ids were found without `tool_result` blocks immediately after: "
                       f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                       f"in the next message.")
        previous = messages[i - 1] if i > 0 else None
        offered = set(_ids(previous["content"], "tool_use", "id")) if previous and previous["role"] == "assistant" \
            else set()
        for j, block in enumerate(_blocks(message["content"])):
            if block.get("type") == "tool_result" and block["tool_use_id"] not in offered:
                raise _bad(f"messages.{i}.content.{j}", f"unexpected `tool_use_id` found in `tool_result` blocks: "
                           f"{block['tool_use_id']}. Each `tool_result` block must have a corresponding `tool_use` "
                           f"block in the previous message.")


def _check_message(i: int, message: Any, last: bool) -> None:
    if not isinstance(message, dict):
        raise _bad(f"messages.{i}", "Input should be a valid dictionary")
    role = message.get("role")
    if role == "system":
        raise _bad("messages", 'Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
                   'not "system" as an input message role.')
    if role not in ("user", "assistant"):
        raise _bad(f"messages.{i}.role", "Input should be 'user' or 'assistant'")
    extra = set(message) - {"role", "content"}
    if extra:
        raise _bad(f"messages.{i}.{sorted(extra)[0]}", "Extra inputs are not permitted")
    content = message.get("content")
    if not isinstance(content, str | list):
        raise _bad(f"messages.{i}.content", "Field required" if content is None else "Input should be a valid list")
    if not content and not (last and role == "assistant"):
        raise _bad(f"messages.{i}", "all messages must have non-empty content except for the optional final "
                   "assistant message")
    for j, block in enumerate(content if isinstance(content, list) else []):
        _check_block(f"messages.{i}.content.{j}", block, role)
    if last and role == "assistant" and _text_of(content) != _text_of(content).rstrip():
        raise _bad("messages", "final assistant content cannot end with trailing whitespace")


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        raise _bad("messages", "Field required")
    if not isinstance(messages, list):
        raise _bad("messages", "Input should be a valid list")
    if not messages:
        raise _bad("messages", "at least one message is required")
    for i, message in enumerate(messages):
        _check_message(i, message, i == len(messages) - 1)
    _check_tool_pairs(messages)
    return messages


def _check_tool(i: int, tool: Any) -> None:
    if not isinstance(tool, dict):
        raise _bad(f"tools.{i}", "Input should be a valid dictionary")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        if isinstance(kind, str) and (_SERVER_TOOL.match(kind) or kind == "mcp_toolset"):
            return  # a server tool (web_search_20250305, bash_20250124, ...): its own schema, not checked here
        raise _bad(f"tools.{i}", f"Input tag {kind!r} found using 'type' does not match any of the expected tags")
    extra = set(tool) - TOOL_KEYS
    if extra:
        raise _bad(f"tools.{i}.custom.{sorted(extra)[0]}", "Extra inputs are not permitted")
    name = tool.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise _bad(f"tools.{i}.custom.name", "String should match pattern '^[a-zA-Z0-9_-]{1,128}$'")
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise _bad(f"tools.{i}.custom.input_schema", "Field required")
    if schema.get("type") != "object":
        raise _bad(f"tools.{i}.custom.input_schema.type", "Input should be 'object'")


def _check_tool_choice(choice: Any) -> None:
    if not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICES:
        raise _bad("tool_choice", "Input tag found using 'type' does not match any of the expected tags: "
                   "'auto', 'any', 'tool', 'none'")
    if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
        raise _bad("tool_choice.tool.name", "Field required")


def _check_options(body: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 1):
        raise _bad("temperature", "Input should be less than or equal to 1")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise _bad("stop_sequences", "Input should be a valid list of strings")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _bad("stream", "Input should be a valid boolean")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise _bad("system", "Input should be a valid string or list of text blocks")
    for j, block in enumerate(system if isinstance(system, list) else []):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise _bad(f"system.{j}", "Input should be a text block")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _bad("tools", "Input should be a valid list")
    for i, tool in enumerate(tools or []):
        _check_tool(i, tool)
    if body.get("tool_choice") is not None:
        _check_tool_choice(body["tool_choice"])


def parse_request(headers: Mapping[str, str], raw: bytes) -> tuple[dict[str, Any], Request]:
    """The body and what the fake needs of it, or the AnthropicError the real API answers.

    `headers` has lower-case names. Checked in the real API's order: credentials, version, body."""
    _check_headers(headers)
    try:
        body = json.loads(raw)
    except ValueError:
        raise AnthropicError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise AnthropicError(400, "The request body must be a JSON object.")
    extra = sorted(set(body) - TOP_LEVEL)
    if extra:
        raise _bad(extra[0], "Extra inputs are not permitted")
    model, max_tokens = body.get("model"), body.get("max_tokens")
    if not isinstance(model, str) or not model:
        raise _bad("model", "Field required")
    if max_tokens is None:
        raise _bad("max_tokens", "Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _bad("max_tokens", "Input should be greater than or equal to 1")
    messages = _check_messages(body.get("messages"))
    _check_options(body)
    words = len(_text_of(body.get("system") or "").split()) + sum(len(_text_of(m["content"]).split())
                                                                   for m in messages)
    return body, Request(model, max_tokens, body.get("stream") is True, messages, words)


# --- answers -----------------------------------------------------------------------------------------

def stop_reason(finish: str) -> str:
    return STOP_REASONS.get(finish, finish)


def tool_use_id(call: ToolCall, index: int, message_id: str) -> str:
    return call.id or f"toolu_{message_id.removeprefix('msg_')}_{index}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def event(name: str, data: dict[str, Any]) -> bytes:
    """One server-sent event; its data repeats the event name as `type`, as the API's do."""
    return f"event: {name}\ndata: {_dumps({'type': name, **data})}\n\n".encode()


def _usage(prompt_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": prompt_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": output_tokens}


def output_tokens(tokens: list[str], calls: tuple[ToolCall, ...]) -> int:
    """Each text token and each streamed piece of a tool call's input counts as one output token."""
    return len(tokens) + sum(len(c.pieces()) for c in calls)


def message(request: Request, script: Script, message_id: str) -> dict[str, Any]:
    """The whole `message` object a non-streamed request gets."""
    tokens, finish, calls = planned(script, request.max_tokens)
    content: list[dict[str, Any]] = [{"type": "text", "text": "".join(tokens)}] if tokens else []
    content += [{"type": "tool_use", "id": tool_use_id(c, i, message_id), "name": c.name, "input": c.arguments}
                for i, c in enumerate(calls)]
    return {"id": message_id, "type": "message", "role": "assistant", "model": request.model, "content": content,
            "stop_reason": stop_reason(finish), "stop_sequence": None,
            "usage": _usage(request.prompt_tokens, output_tokens(tokens, calls))}


def _tool_units(calls: tuple[ToolCall, ...], first_index: int, message_id: str) -> list[bytes]:
    """Per call: its block's start with an empty input_json_delta and the first piece, then the other pieces;
    the block before it is stopped in the same unit."""
    units = []
    for n, call in enumerate(calls):
        index = first_index + n
        pieces = call.pieces()
        start = event("content_block_start", {"index": index, "content_block": {
            "type": "tool_use", "id": tool_use_id(call, n, message_id), "name": call.name, "input": {}}})
        stop = event("content_block_stop", {"index": index - 1}) if index > 0 else b""
        deltas = [event("content_block_delta", {"index": index, "delta": {"type": "input_json_delta",
                                                                          "partial_json": p}}) for p in ["", *pieces]]
        units.append(stop + start + deltas[0] + deltas[1])
        units += deltas[2:]
    return units


def frames(request: Request, script: Script, message_id: str) -> Frames:
    """The event stream of a streamed request, one unit per text token or tool input piece."""
    tokens, finish, calls = planned(script, request.max_tokens)
    start = {"id": message_id, "type": "message", "role": "assistant", "model": request.model, "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": _usage(request.prompt_tokens, 1)}
    head = event("message_start", {"message": start})
    if tokens:
        head += event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    head += event("ping", {})
    units = [event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": t}}) for t in tokens]
    units += _tool_units(calls, 1 if tokens else 0, message_id)
    blocks = (1 if tokens else 0) + len(calls)
    tail = event("content_block_stop", {"index": blocks - 1}) if blocks else b""
    tail += event("message_delta", {"delta": {"stop_reason": stop_reason(finish), "stop_sequence": None},
                                    "usage": _usage(request.prompt_tokens, output_tokens(tokens, calls))})
    return Frames(head=head, units=units, tail=tail + event("message_stop", {}))


def error_body(status: int, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}, "request_id": request_id}


def error_event(status: int, message: str) -> bytes:
    """An error inside a 200 stream (after which the API ends the stream)."""
    return event("error", {"error": {"type": error_type(status), "message": message}})


_BAD_VALUES = {"not_json": b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":',
               "number": b"42", "array": b"[1]", "string": b'"x"',
               "delta_not_object": b'{"type":"content_block_delta","index":0,"delta":"x"}',
               "missing_fields": b'{"type":"content_block_delta"}'}


def bad_value(mode: str) -> bytes | None:
    """The malformed data of a content_block_delta for a garbage data mode; None for the modes that are
    about OpenAI's chunk fields (choices, log-probs), which this wire does not have."""
    return _BAD_VALUES.get(mode)


def delta_frame(data: bytes) -> bytes:
    return b"event: content_block_delta\ndata: " + data + b"\n\n"


# Half an event: the connection drops in the middle of its data line.
CUT_EVENT = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"del'
