"""Pure chunk shaping: fit upstream chunks to what the client asked for, and fold a
stream of chunks into one chat.completion for non-streaming clients."""

from __future__ import annotations

from typing import Any


def client_top_logprobs(body: dict[str, Any]) -> int | None:
    """How many alternatives per token the client wants back; None: no logprobs at all."""
    if not body.get("logprobs"):
        return None
    return int(body.get("top_logprobs") or 0)


def wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options") or {}
    return bool(options.get("include_usage"))


def shape_chunk(chunk: dict[str, Any], top_logprobs: int | None) -> dict[str, Any]:
    """Strip the log-probs the client did not ask for, or trim them to its top_logprobs."""
    for choice in chunk.get("choices") or ():
        logprobs = choice.get("logprobs")
        if logprobs is None:
            continue
        if top_logprobs is None:
            choice["logprobs"] = None
            continue
        _trim(logprobs.get("content"), top_logprobs)
        _trim(logprobs.get("refusal"), top_logprobs)
    return chunk


def _trim(entries: list[dict[str, Any]] | None, top_logprobs: int) -> None:
    for item in entries or ():
        item["top_logprobs"] = (item.get("top_logprobs") or [])[:top_logprobs]


def is_usage_chunk(chunk: dict[str, Any]) -> bool:
    return not chunk.get("choices") and chunk.get("usage") is not None


def content_tokens(chunk: dict[str, Any]) -> int:
    """Tokens a chunk carries: its log-prob entries when present, else one per non-empty delta."""
    count = 0
    for choice in chunk.get("choices") or ():
        logprobs = choice.get("logprobs") or {}
        entries = logprobs.get("content")
        if entries:
            count += len(entries)
        elif (choice.get("delta") or {}).get("content"):
            count += 1
    return count


def assemble_completion(chunks: list[dict[str, Any]], top_logprobs: int | None) -> dict[str, Any]:
    """Fold streamed chunks into the chat.completion the upstream would have returned.

    Built as plain dicts in the SDK model's exact shape (the unit tests hold it to that); no
    model is validated per request on the hot path."""
    head = next((c for c in chunks if c.get("id")), chunks[0] if chunks else {})
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            _fold_choice(choices.setdefault(choice.get("index", 0), _empty_choice(choice.get("index", 0))),
                         choice, top_logprobs)
    completion: dict[str, Any] = {
        "id": head.get("id", ""),
        "object": "chat.completion",
        "created": head.get("created", 0),
        "model": head.get("model", ""),
        "choices": [_finish_choice(choices[i], top_logprobs) for i in sorted(choices)],
    }
    for key in ("system_fingerprint", "service_tier"):
        if head.get(key) is not None:
            completion[key] = head[key]
    if usage is not None:
        completion["usage"] = usage
    return completion


def _empty_choice(index: int) -> dict[str, Any]:
    return {"index": index, "role": "assistant", "content": [], "refusal": [], "tool_calls": {},
            "finish_reason": None, "logprobs": [], "refusal_logprobs": []}


def _fold_choice(state: dict[str, Any], choice: dict[str, Any], top_logprobs: int | None) -> None:
    delta = choice.get("delta") or {}
    state["role"] = delta.get("role") or state["role"]
    if delta.get("content"):
        state["content"].append(delta["content"])
    if delta.get("refusal"):
        state["refusal"].append(delta["refusal"])
    for call in delta.get("tool_calls") or ():
        slot = state["tool_calls"].setdefault(call.get("index", 0), {"id": "", "type": "function",
                                                                     "function": {"name": "", "arguments": ""}})
        slot["id"] = call.get("id") or slot["id"]
        slot["type"] = call.get("type") or slot["type"]
        function = call.get("function") or {}
        slot["function"]["name"] += function.get("name") or ""
        slot["function"]["arguments"] += function.get("arguments") or ""
    state["finish_reason"] = choice.get("finish_reason") or state["finish_reason"]
    logprobs = choice.get("logprobs") or {}
    state["logprobs"].extend(logprobs.get("content") or ())
    state["refusal_logprobs"].extend(logprobs.get("refusal") or ())


def _finish_choice(state: dict[str, Any], top_logprobs: int | None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": state["role"],
        "content": "".join(state["content"]) if state["content"] or not state["tool_calls"] else None,
        "refusal": "".join(state["refusal"]) or None,
    }
    if state["tool_calls"]:
        message["tool_calls"] = [state["tool_calls"][i] for i in sorted(state["tool_calls"])]
    logprobs = None
    if top_logprobs is not None:
        _trim(state["logprobs"], top_logprobs)
        _trim(state["refusal_logprobs"], top_logprobs)
        logprobs = {"content": state["logprobs"], "refusal": state["refusal_logprobs"] or None}
    return {"index": state["index"], "message": message, "logprobs": logprobs,
            "finish_reason": state["finish_reason"] or "stop"}
