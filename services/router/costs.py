"""What one answer cost, per tier, and what it saved against sending the request to the heavyweight
alone. Pure: the flows hand it token counts, the metrics and the X-Cost-USD header read its bill.

Counts come from the upstream's usage when it reported one (a call that ran to its end); an aborted
draft or a cancelled speculation reports none, so its completion tokens are the tokens received and
its prompt is the request's prompt as the tiers counted it elsewhere, or estimated at four characters
a token. The baseline is what the heavyweight would have charged for the same prompt and an answer as
long as the one the client got.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.router.assemble import content_tokens
from shared.pricing import Price

CHARS_PER_TOKEN = 4


def estimate_prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))


def reported_usage(chunks: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    return next((chunk["usage"] for chunk in reversed(chunks) if chunk.get("usage")), None)


@dataclass
class Spend:
    """The calls one answer made: (tier, prompt tokens, completion tokens) each."""

    prompt_tokens: int  # the request's prompt: estimated until a tier reports it
    calls: list[tuple[str, int, int]] = field(default_factory=list)
    answer_tokens: int = 0  # completion tokens the client got
    _reported: bool = False

    def add(self, tier: str, chunks: Sequence[dict[str, Any]], usage: dict[str, Any] | None = None,
            own_prompt: bool = True) -> int:
        """One call's cost from its chunks (and its usage, if the caller kept it aside); returns its
        completion tokens. own_prompt: the call sent the client's messages as they were (not a
        continuation, whose prompt also holds the shown text), so its count is the request's."""
        usage = usage or reported_usage(chunks)
        if usage is not None:
            prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            if own_prompt and not self._reported:
                self.prompt_tokens, self._reported = prompt, True
        else:
            prompt, completion = self.prompt_tokens, sum(content_tokens(c) for c in chunks)
        self.calls.append((tier, prompt, completion))
        return completion

    def add_tokens(self, tier: str, completion_tokens: int) -> None:
        """A call cut short with only its token count known (a cancelled speculation)."""
        self.calls.append((tier, self.prompt_tokens, completion_tokens))


@dataclass(frozen=True)
class Bill:
    by_tier: dict[str, float]
    baseline: float  # the heavyweight alone

    @property
    def total(self) -> float:
        return sum(self.by_tier.values())

    @property
    def saved(self) -> float:
        return self.baseline - self.total


def bill(spend: Spend, prices: dict[str, Price | None]) -> Bill | None:
    """None when a tier involved, or the heavyweight, has no price: no made-up cost."""
    heavyweight = prices.get("heavyweight")
    if heavyweight is None:
        return None
    by_tier: dict[str, float] = {}
    for tier, prompt, completion in spend.calls:
        price = prices.get(tier)
        if price is None:
            return None
        by_tier[tier] = by_tier.get(tier, 0.0) + price.cost(prompt, completion)
    return Bill(by_tier, heavyweight.cost(spend.prompt_tokens, spend.answer_tokens))
