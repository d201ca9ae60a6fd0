"""Server-sent-event framing for chat.completion.chunk streams. Pure."""

from __future__ import annotations

from typing import Any

from shared import fastjson

DONE = b"data: [DONE]\n\n"


def frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + fastjson.dumps(payload) + b"\n\n"


def completion_to_chunks(completion: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """Replay a whole chat.completion as the chunks a streaming client expects, in the shape a live
    stream has: a role chunk with empty content, the content, a finish chunk, then usage if asked
    (`usage: null` on every chunk before it, as OpenAI sends). With log-probs whose tokens spell the
    content, the content goes token by token, each chunk carrying its token's log-prob, as it was
    streamed; otherwise it goes in one chunk carrying all of them."""
    common = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
              "model": completion["model"]}
    for key in ("system_fingerprint", "service_tier"):
        if completion.get(key):
            common[key] = completion[key]
    if include_usage:
        common["usage"] = None
    chunks: list[dict[str, Any]] = []
    for choice in completion.get("choices", []):
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        logprobs = choice.get("logprobs")
        chunks.append(_chunk(common, index, {"role": message.get("role", "assistant"), "content": "",
                                             "refusal": None}, None))
        delta: dict[str, Any] = {}
        if message.get("content"):
            delta["content"] = message["content"]
        if message.get("refusal"):
            delta["refusal"] = message["refusal"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        tokens = _token_by_token(delta, logprobs)
        if tokens is not None:
            chunks.extend(_chunk(common, index, {"content": entry["token"]}, {"content": [entry], "refusal": None})
                          for entry in tokens)
        elif delta or logprobs:
            chunks.append(_chunk(common, index, delta, logprobs))
        chunks.append(_chunk(common, index, {}, None, choice.get("finish_reason") or "stop"))
    if include_usage:
        chunks.append({**common, "choices": [], "usage": completion.get("usage")})
    return chunks


def _token_by_token(delta: dict[str, Any], logprobs: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The log-prob entries to replay one chunk each, when they spell the content exactly."""
    if not logprobs or logprobs.get("refusal") or delta.get("tool_calls") or delta.get("refusal"):
        return None
    entries = logprobs.get("content") or []
    if not entries or "".join(str(entry.get("token", "")) for entry in entries) != delta.get("content"):
        return None
    return entries


def _chunk(common: dict[str, Any], index: int, delta: dict[str, Any], logprobs: dict[str, Any] | None,
           finish_reason: str | None = None) -> dict[str, Any]:
    return {**common, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                   "finish_reason": finish_reason}]}
