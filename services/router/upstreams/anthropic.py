"""Anthropic's Messages API (`POST {base}/v1/messages`), spoken natively, translated to and from OpenAI's chat shape.

Request: system and developer messages become the `system` prompt; user, assistant and tool
messages become alternating turns of content blocks (text, image, tool_use, tool_result; tool
results are user turns); tools, tool_choice, stop, max_tokens (required by the API: 4096 when the
client sets none) and temperature (clamped to Anthropic's 0..1) map to their equivalents. What has
no equivalent (response_format, logprobs, seed) is not sent.

Response: the streaming events (message_start, content_block_start / _delta / _stop with
text_delta and input_json_delta, message_delta with the stop reason and usage, message_stop, ping,
error) become OpenAI chunks: a role chunk, content and tool-call deltas, one finish chunk, one usage
chunk. Anthropic returns no token log-probs, so it cannot be a drafter (refused at start-up).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from services.router.upstreams.base import (
    HttpRequest,
    Target,
    content_text,
    error_object,
    join_url,
    retry_after_s,
    split_data_url,
    tool_arguments,
)
from services.router.upstreams.errors import UpstreamError, UpstreamStatusError, UpstreamStreamError, retryable_status
from services.router.wellformed import MalformedChunk, check_chunk
from shared import fastjson

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
                  "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}
_SYSTEM_ROLES = frozenset({"system", "developer"})


class AnthropicProvider:
    name = "anthropic"
    logprobs = False

    def request(self, target: Target, params: dict[str, Any]) -> HttpRequest:
        headers = {"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if target.api_key:
            headers["x-api-key"] = target.api_key
        headers.update(target.headers)
        return HttpRequest("POST", join_url(target.base_url, "/v1", "/messages"), headers,
                           fastjson.dumps(messages_body(params, target.model)))

    def decoder(self) -> AnthropicDecoder:
        return AnthropicDecoder()

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        error = error_object(body)
        return UpstreamStatusError(_message(error, f"HTTP {status}"), status=status, body=_openai_error(error),
                                   retryable=retryable_status(status), retry_after_s=retry_after_s(headers))


def messages_body(params: dict[str, Any], model: str) -> dict[str, Any]:
    """The Messages API body for an OpenAI chat-completions body."""
    system, messages = conversation(params.get("messages") or [])
    body: dict[str, Any] = {"model": params.get("model") or model, "messages": messages,
                            "max_tokens": int(params.get("max_completion_tokens") or params.get("max_tokens")
                                              or DEFAULT_MAX_TOKENS),
                            "stream": True}
    if system:
        body["system"] = system
    if params.get("temperature") is not None:
        body["temperature"] = min(float(params["temperature"]), 1.0)
    for ours, theirs in (("top_p", "top_p"), ("top_k", "top_k")):
        if params.get(ours) is not None:
            body[theirs] = params[ours]
    stop = params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = [_tool(tool) for tool in params.get("tools") or () if isinstance(tool, dict) and tool.get("function")]
    if tools:
        body["tools"] = tools
        choice = _tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
        if choice is not None:
            body["tool_choice"] = choice
    user = params.get("user")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    return body


def conversation(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, alternating turns of content blocks) for OpenAI messages.

    Consecutive messages of one role become one turn (several tool results answer one assistant
    turn together, as the API wants). A last assistant turn is a prefill the model continues;
    the API refuses one that ends in whitespace, so that is trimmed."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            text = content_text(message.get("content"))
            if text:
                system.append(text)
            continue
        if role == "assistant":
            blocks = _assistant_blocks(message)
        elif role == "tool":
            blocks = [{"type": "tool_result", "tool_use_id": str(message.get("tool_call_id") or ""),
                       "content": content_text(message.get("content"))}]
            role = "user"
        else:
            blocks = _user_blocks(message.get("content"))
            role = "user"
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if turns and turns[-1]["role"] == "assistant":
        last = turns[-1]["content"][-1]
        if last["type"] == "text":
            last["text"] = last["text"].rstrip()
            if not last["text"]:
                turns[-1]["content"].pop()
                if not turns[-1]["content"]:
                    turns.pop()
    return "\n\n".join(system), turns


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url") or ""
            inline = split_data_url(url)
            source = ({"type": "base64", "media_type": inline[0], "data": inline[1]} if inline
                      else {"type": "url", "url": url})
            blocks.append({"type": "image", "source": source})
        elif kind == "file":
            inline = split_data_url((part.get("file") or {}).get("file_data") or "")
            if inline:
                blocks.append({"type": "document", "source": {"type": "base64", "media_type": inline[0],
                                                              "data": inline[1]}})
    return blocks


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    text = content_text(message.get("content"))
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": str(call.get("id") or ""), "name": str(function.get("name") or ""),
                       "input": tool_arguments(function.get("arguments"))})
    return blocks


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    spec: dict[str, Any] = {"name": function.get("name"),
                            "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        spec["description"] = function["description"]
    return spec


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        mapped: dict[str, Any] | None = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        mapped = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}.get(str(choice)) \
            if choice is not None else None
    if parallel is False:
        mapped = {**(mapped or {"type": "auto"}), "disable_parallel_tool_use": True}
    return mapped


def _message(error: dict[str, Any] | None, default: str) -> str:
    message = error.get("message") if error else None
    return message if isinstance(message, str) and message else default


def _openai_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """Anthropic's {type, message} as OpenAI's {message, type, param, code}."""
    if error is None:
        return None
    kind = error.get("type")
    return {"message": _message(error, "upstream error"), "type": kind, "param": None, "code": kind}


class AnthropicDecoder:
    """The Messages API's stream as OpenAI chunks; `done` at message_stop."""

    def __init__(self) -> None:
        self.done = False
        self._id = "msg"
        self._model = ""
        self._created = int(time.time())
        self._prompt_tokens = 0
        self._cached = 0  # of the prompt tokens, read from Anthropic's prompt cache
        self._completion_tokens = 0
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._argued: set[int] = set()  # tool calls whose arguments have begun

    def feed(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        try:
            value = fastjson.loads(data)
        except ValueError:
            raise MalformedChunk("a data value that is not JSON") from None
        if type(value) is not dict:
            raise MalformedChunk("an event that is not a JSON object")
        kind = value.get("type") or event
        handler = _HANDLERS.get(kind)  # ping and event types added later: nothing to pass on
        if handler is None:
            return []
        try:
            chunks = handler(self, value)
        except (KeyError, TypeError, AttributeError, ValueError):
            raise MalformedChunk(f"a {kind} event the Messages API does not send") from None
        return [check_chunk(chunk) for chunk in chunks]

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    def _message_start(self, value: dict[str, Any]) -> list[dict[str, Any]]:
        message = value["message"]
        self._id = str(message.get("id") or self._id)
        self._model = str(message.get("model") or "")
        self._count(message.get("usage") or {})
        return [self._chunk({"role": "assistant", "content": ""})]

    def _count(self, usage: dict[str, Any]) -> None:
        """Usage so far (message_delta's counts are cumulative): input, both kinds of cached input, output."""
        if "input_tokens" in usage:
            self._cached = int(usage.get("cache_read_input_tokens") or 0)
            self._prompt_tokens = (int(usage.get("input_tokens") or 0) + self._cached
                                   + int(usage.get("cache_creation_input_tokens") or 0))
        if "output_tokens" in usage:
            self._completion_tokens = int(usage.get("output_tokens") or 0)

    def _block_start(self, value: dict[str, Any]) -> list[dict[str, Any]]:
        block = value["content_block"]
        if block["type"] == "tool_use":
            call = len(self._tools)
            self._tools[int(value["index"])] = call
            arguments = fastjson.dumps(block["input"]).decode() if block.get("input") else ""
            if arguments:
                self._argued.add(call)
            return [self._chunk({"tool_calls": [{"index": call, "id": str(block["id"]), "type": "function",
                                                 "function": {"name": str(block["name"]),
                                                              "arguments": arguments}}]})]
        if block["type"] == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _block_delta(self, value: dict[str, Any]) -> list[dict[str, Any]]:
        delta = value["delta"]
        if delta["type"] == "text_delta":
            return [self._chunk({"content": delta["text"]})]
        if delta["type"] == "input_json_delta" and delta["partial_json"]:
            call = self._tools[int(value["index"])]
            self._argued.add(call)
            return [self._chunk({"tool_calls": [{"index": call, "function": {"arguments": delta["partial_json"]}}]})]
        return []  # thinking, signatures, citations: nothing in OpenAI's chunk shape

    def _block_stop(self, value: dict[str, Any]) -> list[dict[str, Any]]:
        call = self._tools.get(int(value["index"]))
        if call is None or call in self._argued:
            return []
        self._argued.add(call)  # a tool without parameters: its arguments are still a JSON object
        return [self._chunk({"tool_calls": [{"index": call, "function": {"arguments": "{}"}}]})]

    def _message_delta(self, value: dict[str, Any]) -> list[dict[str, Any]]:
        reason = value["delta"].get("stop_reason")
        self._count(value.get("usage") or {})
        usage: dict[str, Any] = {"prompt_tokens": self._prompt_tokens, "completion_tokens": self._completion_tokens,
                                 "total_tokens": self._prompt_tokens + self._completion_tokens}
        if self._cached:
            usage["prompt_tokens_details"] = {"cached_tokens": self._cached}
        usage_chunk = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                       "model": self._model, "choices": [], "usage": usage}
        return [self._chunk({}, FINISH_REASONS.get(str(reason), "stop")), usage_chunk]

    def _message_stop(self, value: dict[str, Any]) -> list[dict[str, Any]]:
        self.done = True
        return []

    def _error(self, value: dict[str, Any]) -> list[dict[str, Any]]:
        error = value.get("error") if isinstance(value.get("error"), dict) else {"message": str(value.get("error"))}
        raise UpstreamStreamError(_message(error, "stream error"), body=_openai_error(error))


_HANDLERS: dict[str, Callable[[AnthropicDecoder, dict[str, Any]], list[dict[str, Any]]]] = {
    "message_start": AnthropicDecoder._message_start,
    "content_block_start": AnthropicDecoder._block_start,
    "content_block_delta": AnthropicDecoder._block_delta,
    "content_block_stop": AnthropicDecoder._block_stop,
    "message_delta": AnthropicDecoder._message_delta,
    "message_stop": AnthropicDecoder._message_stop,
    "error": AnthropicDecoder._error,
}

PROVIDER = AnthropicProvider()
