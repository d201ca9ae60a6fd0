"""The drafter as a last check on a would-be semantic hit: "do these two requests ask for the same answer?"

One tiny call (max_tokens 1, temperature 0, top log-probs) to the drafter tier, only for a candidate
the configured verifier already passed. The candidate is served only when the probability mass of
yes-like first tokens reaches `min_prob`. Anything else rejects it: a confident or unsure "no"
(`drafter_no`), and a drafter that is slow, down, or sends no log-probs (`drafter_unavailable`);
a doubt is never settled in favour of serving.

The call is the router's (services.router.upstream.create_tier / complete): one place turns a tier's
config (provider, base_url with or without credentials, api_key_env, no retries) into calls, so the
drafter is reached here exactly as the router reaches it, whichever provider it is.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from openai.types.chat import ChatCompletion

from services.cache.verify import Verdict
from services.router.upstream import Tier, complete, create_tier
from services.router.upstreams.errors import UpstreamError
from shared.config import UpstreamConfig

log = structlog.get_logger(__name__)

NAME = "drafter"
PASSED, NO, UNAVAILABLE = "passed", "drafter_no", "drafter_unavailable"
TOP_LOGPROBS = 10
SYSTEM = ("You check a cache. Two user requests are the same when one answer serves both: the same meaning, "
          "the same numbers, names, languages and direction. Reply with one word: Yes or No.")
_YES = "yes"
_TOKEN_EDGES = " \t\n.,!:;\"'*_`"


def question(query: str, cached: str) -> list[dict[str, str]]:
    """The yes/no question about two requests, as chat messages."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Request 1: {cached}\nRequest 2: {query}\n"
                                        "Do these two requests ask for the same answer? Yes or No?"}]


def is_yes(token: str) -> bool:
    """"Yes", " yes", "YES", "Yes." all say yes; "Yesterday" does not."""
    return token.strip(_TOKEN_EDGES).lower() == _YES


def yes_probability(alternatives: Iterable[tuple[str, float]]) -> float:
    """The probability mass of yes-like tokens among a first token's (token, natural-log prob) alternatives.

    Servers may list the same text twice (different token ids); each is its own mass. Sentinel
    log-probs (-9999, -inf) count as nothing.
    """
    total = sum(math.exp(logprob) for token, logprob in alternatives if is_yes(token) and math.isfinite(logprob))
    return min(total, 1.0)


def first_token_alternatives(completion: Any) -> list[tuple[str, float]] | None:
    """The first generated token's top log-probs (the chosen token alone if none are listed); None: no log-probs."""
    try:
        content = completion.choices[0].logprobs.content
        first = content[0]
    except (AttributeError, IndexError, TypeError):
        return None
    tops = [(alt.token, alt.logprob) for alt in first.top_logprobs or []]
    return tops or [(first.token, first.logprob)]


@dataclass(frozen=True, slots=True)
class DrafterCheck:
    tier: Tier
    min_prob: float
    timeout_s: float
    name: str = NAME

    async def check(self, query: str, cached: str) -> Verdict:
        probability = await self.yes_probability(query, cached)
        if probability is None:
            return Verdict(False, UNAVAILABLE)
        return Verdict(True, PASSED) if probability >= self.min_prob else Verdict(False, NO)

    async def yes_probability(self, query: str, cached: str) -> float | None:
        """P(yes) from the drafter, or None when it could not say in time."""
        body = {"messages": question(query, cached), "max_tokens": 1, "temperature": 0}
        try:
            answer = await asyncio.wait_for(complete(self.tier, body, TOP_LOGPROBS), self.timeout_s)
            completion = ChatCompletion.model_validate(answer)
        except (UpstreamError, TimeoutError, ValueError) as exc:  # ValueError: a body that is no completion
            log.warning("drafter check unavailable; the candidate is not served", error=repr(exc))
            return None
        alternatives = first_token_alternatives(completion)
        if alternatives is None:
            log.warning("drafter check got no log-probs; the candidate is not served", model=self.tier.model)
            return None
        return yes_probability(alternatives)

    async def close(self) -> None:
        await self.tier.client.close()


def create_drafter_check(config: UpstreamConfig, min_prob: float, timeout_s: float,
                         env: Mapping[str, str]) -> DrafterCheck:
    return DrafterCheck(create_tier(NAME, config, env), min_prob, timeout_s)
