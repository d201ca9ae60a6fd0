"""One streamed call to a tier, read whole: the text, each token's top-k log-probs, usage and timing.

It goes through the router's own upstream code (create_tier / stream_params / open_chunks), so the
calibration sees exactly the request the router sends and the chunks it reads, including the
checks that reject a malformed stream; there is no second client to drift from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from services.router.signals import TokenTrace, tokens_of
from services.router.upstream import Tier, open_chunks, stream_params


@dataclass(frozen=True)
class Answer:
    text: str
    tokens: tuple[TokenTrace, ...]
    usage: dict[str, int] | None
    finish_reason: str | None
    ttft_s: float | None  # request sent to first content; None when no content came
    latency_s: float  # request sent to the end of the stream


async def stream_answer(tier: Tier, body: dict[str, Any], top_k: int | None = None) -> Answer:
    """Stream `body` (messages, max_tokens, temperature...) to the tier; with `top_k`, ask for and keep
    that many alternatives per token, as the drafter call of the router does."""
    params = stream_params(body, tier.model, top_k)
    started = time.monotonic()
    parts: list[str] = []
    tokens: list[TokenTrace] = []
    usage: dict[str, int] | None = None
    finish_reason = None
    ttft = None
    async with open_chunks(tier, params) as chunks:
        async for chunk in chunks:
            content, finish = _content(chunk)
            traced = tokens_of(chunk, top_k) if top_k else []
            if ttft is None and (content or traced):
                ttft = time.monotonic() - started
            parts.append(content)
            tokens.extend(traced)
            finish_reason = finish or finish_reason
            usage = _usage(chunk) or usage
    return Answer("".join(parts), tuple(tokens), usage, finish_reason, ttft, time.monotonic() - started)


def _content(chunk: dict[str, Any]) -> tuple[str, str | None]:
    """The first choice's new text and finish_reason (a chunk may carry neither)."""
    choices = chunk.get("choices") or ()
    if not choices:
        return "", None
    choice = choices[0]
    delta = choice.get("delta") or {}
    content = delta.get("content")
    return (content if isinstance(content, str) else ""), choice.get("finish_reason")


def _usage(chunk: dict[str, Any]) -> dict[str, int] | None:
    usage = chunk.get("usage")
    if not isinstance(usage, dict):
        return None
    return {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0)}
