"""What one answer cost, call by call, and what it saved against sending the request to the
heavyweight alone. Pure: the flows record each upstream call (which deployment served it, in what
role, how many tokens), `account` prices them into the `shared.messages.Account` that travels on
the last reply; the metrics and the X-Cost-USD header read the same account.

Each call is priced at the price of the deployment that actually served it (after the pool's
retries, hedges and fallbacks: a mixed pool's cheap and dear deployments are told apart), not at
its tier's first deployment's.

Counts come from the upstream's usage when it reported one (a call that ran to its end); an aborted
draft or a cancelled speculation reports none, so its completion tokens are the tokens received and
its prompt is the request's prompt as a tier reported it for the same messages (any call of the
answer, also a later one), or estimated at four characters a token. The baseline is what the
heavyweight tier (its first deployment's price) would have charged for the same prompt and an
answer as long as the one the client got.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.router.assemble import content_tokens
from services.router.upstream import Tier
from services.router.upstreams.pool import Stream
from shared.messages import Account, UpstreamCall
from shared.pricing import Price

CHARS_PER_TOKEN = 4

# What a call did for the answer (UpstreamCall.role).
DRAFT = "draft"  # the drafter's answer, served (whole, or continued by the drafter itself)
ABORTED_DRAFT = "aborted_draft"  # a draft cut off by escalation (part of it may have been shown)
SPECULATION = "speculation"  # a heavyweight call started early that served the answer
WASTED_SPECULATION = "wasted_speculation"  # one cancelled: the draft was kept
ANSWER = "answer"  # a tier's own answer: escalation, forced tier, named deployment
CONTINUATION = "continuation"  # a call that went on from text the client had already been shown
ROLES = (DRAFT, ABORTED_DRAFT, SPECULATION, WASTED_SPECULATION, ANSWER, CONTINUATION)


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


@dataclass(frozen=True)
class Served:
    """The deployment a call went to: its tier, name, model and price (None: unpriced)."""

    tier: str
    deployment: str
    model: str
    price: Price | None


def served_by(tier: Tier, chunks: object) -> Served:
    """Who serves a stream `open_chunks(tier, ...)` opened: the pool's deployment that took it (a
    named deployment's tier is narrowed to it); a tier without a pool, its one target."""
    if isinstance(chunks, Stream):
        member = chunks.member
        return Served(tier.name, member.name, member.target.model, member.state.price)
    return Served(tier.name, tier.client.target.name, tier.model, tier.price)


def unknown_deployment(tier: Tier) -> Served:
    """A call whose deployment is not known (a speculation cancelled before its stream opened):
    priced at the tier's price, as the tier's first deployment would charge."""
    return Served(tier.name, "", tier.model, tier.price)


@dataclass(frozen=True)
class Charge:
    """One call as recorded; prompt_tokens None: the request's prompt, known only at the end."""

    served: Served
    role: str
    prompt_tokens: int | None
    completion_tokens: int


@dataclass
class Spend:
    """The calls one answer made, in the order they were recorded."""

    prompt_tokens: int  # the request's prompt: estimated until a call reports it
    calls: list[Charge] = field(default_factory=list)
    answer_tokens: int = 0  # completion tokens the client got
    _reported: bool = False

    def add(self, served: Served, role: str, chunks: Sequence[dict[str, Any]], usage: dict[str, Any] | None = None,
            own_prompt: bool = True) -> int:
        """One call's tokens from its chunks (and its usage, if the caller kept it aside); returns its
        completion tokens. own_prompt: the call sent the client's messages as they were (not a
        continuation, whose prompt also holds the shown text), so its prompt count is the request's."""
        usage = usage or reported_usage(chunks)
        if usage is None:
            self.calls.append(Charge(served, role, None, sum(content_tokens(c) for c in chunks)))
            return self.calls[-1].completion_tokens
        prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        if own_prompt and not self._reported:
            self.prompt_tokens, self._reported = prompt, True
        self.calls.append(Charge(served, role, prompt, completion))
        return completion

    def add_tokens(self, served: Served, role: str, completion_tokens: int) -> None:
        """A call cut short with only its token count known (a cancelled speculation)."""
        self.calls.append(Charge(served, role, None, completion_tokens))

    def has(self, role: str) -> bool:
        return any(charge.role == role for charge in self.calls)


def account(spend: Spend, baseline: Price | None) -> Account:
    """The spend priced call by call. cost_usd None when any call's deployment is unpriced;
    baseline_usd None when the heavyweight is (`baseline`: its price)."""
    calls = tuple(_priced(charge, spend.prompt_tokens) for charge in spend.calls)
    costs = [call.cost_usd for call in calls]
    cost = None if any(usd is None for usd in costs) else sum(usd for usd in costs if usd is not None)
    base = None if baseline is None else baseline.cost(spend.prompt_tokens, spend.answer_tokens)
    return Account(calls, cost, base)


def _priced(charge: Charge, request_prompt: int) -> UpstreamCall:
    served = charge.served
    prompt = request_prompt if charge.prompt_tokens is None else charge.prompt_tokens
    usd = None if served.price is None else served.price.cost(prompt, charge.completion_tokens)
    return UpstreamCall(tier=served.tier, deployment=served.deployment, model=served.model, prompt_tokens=prompt,
                        completion_tokens=charge.completion_tokens, role=charge.role, cost_usd=usd)


def by_tier(account_: Account) -> dict[str, float]:
    """USD per tier (the draftgate_cost_usd counter's labels); empty when the account is unpriced."""
    if account_.cost_usd is None:
        return {}
    tiers: dict[str, float] = {}
    for call in account_.calls:
        tiers[call.tier] = tiers.get(call.tier, 0.0) + (call.cost_usd or 0.0)
    return tiers
