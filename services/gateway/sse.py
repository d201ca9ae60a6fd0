"""Server-sent-event framing for chat.completion.chunk streams. Pure."""

from __future__ import annotations

from typing import Any

from shared import fastjson

DONE = b"data: [DONE]\n\n"


def frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + fastjson.dumps(payload) + b"\n\n"


def completion_to_chunks(completion: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """Replay a whole chat.completion as the chunks a streaming client expects."""
    common = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
              "model": completion["model"]}
    if completion.get("system_fingerprint"):
        common["system_fingerprint"] = completion["system_fingerprint"]
    chunks: list[dict[str, Any]] = []
    for choice in completion.get("choices", []):
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": message.get("role", "assistant"), "content": message.get("content") or ""}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        chunks.append({**common, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                              "finish_reason": None}]})
        chunks.append({**common, "choices": [{"index": index, "delta": {}, "logprobs": None,
                                              "finish_reason": choice.get("finish_reason") or "stop"}]})
    if include_usage:
        chunks.append({**common, "choices": [], "usage": completion.get("usage")})
    return chunks
