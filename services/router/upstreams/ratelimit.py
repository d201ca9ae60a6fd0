"""Upstream rate limits (rpm / tpm per deployment) enforced across all routers through Redis.

One Lua script (ratelimit.lua, after the GCRA functions of shared/gcra.lua that the gateway's
per-key limits share) keeps, per deployment, one hash under `draftgate:ratelimit:<name>`
(shared/keys.py) with two GCRA buckets (the continuous-state leaky bucket form: what was charged,
draining at limit / 60 s, refused when it would overflow a bucket of size `limit`). A whole
minute's worth may go at once, then calls pass at the limit's rate: the token-bucket shape
providers themselves enforce (Anthropic documents its limits as token buckets). The script reads
Redis's clock (TIME), so routers on machines whose clocks disagree share one.

Cost per check: one round trip (EVALSHA; `prepare()` loads the script at start-up). A refused
check charges nothing and says how long until the call would fit (`retry_after_s`); the caller
then skips the deployment for that long without asking Redis again (Deployment.rate_limited).

tpm works by reservation. Before the call, `acquire` charges an estimate: estimate_tokens(), the
prompt's characters / 4 plus max_tokens (OpenAI too charges max_tokens and a character-based guess
at the prompt against tpm when a request arrives), at most tpm, so that a request larger than the
whole bucket waits for an empty bucket rather than forever. After the call, `settle` charges the
difference to the actual usage (prompt + completion tokens; 0 for a call that failed before
producing anything): a refund makes room at once, an overrun is a debt later calls wait for. That
is a second round trip, after the answer, only when tpm is set and the estimate was off; it can be
left to a background task.

If Redis fails, the check lets the call through (logged): an outage of the limiter must not stop
traffic that the bus, which needs Redis too, has already delivered.

How a caller uses it:

    limiter = RateLimiter(redis)
    await limiter.prepare()                     # once, at start-up
    admitted = await admit(balancer, limiter, estimate_tokens(params), exclude=tried)
    match admitted:
        case Admitted(call, reserved):
            with call: ...                      # send; call.succeeded() / call.failed() ...
            await limiter.settle(call.deployment, reserved, actual_tokens)
        case RateLimited(retry_after_s): ...    # every deployment at its limit: 429, Retry-After
        case NoneAvailable(): ...               # 503
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.router.upstreams.balance import Balancer, NoneAvailable, Picked, RateLimited
from services.router.upstreams.deployment import Call, Deployment, Unavailable
from shared.gcra import with_gcra
from shared.keys import ratelimit

log = structlog.get_logger(__name__)

SCRIPT = with_gcra(Path(__file__).with_name("ratelimit.lua"))
CHARS_PER_TOKEN = 4  # a rough English/code average; settle() corrects the estimate
DEFAULT_COMPLETION_TOKENS = 512  # reserved for a request that sets no max_tokens


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: float = 0.0  # > 0 when refused
    limit: str | None = None  # which limit refused: "rpm" | "tpm"
    reserved_tokens: int = 0  # what was charged to the tpm bucket (settle() from this)


ALLOWED = Verdict(True)


class RateLimiter:
    """The shared limits, seen from one router. `clock` (seconds) replaces Redis's clock in tests."""

    def __init__(self, redis: Redis, clock: Callable[[], float] | None = None) -> None:
        self._redis = redis
        self._script = redis.register_script(SCRIPT)
        self._clock = clock

    async def prepare(self) -> None:
        """Load the script (at start-up), so the first check is one round trip too. After a Redis
        restart redis-py reloads it by itself (NOSCRIPT: two more round trips, once)."""
        await self._redis.script_load(SCRIPT)

    async def acquire(self, deployment: Deployment, tokens: int) -> Verdict:
        """Charge one request and `tokens` (the estimate) if both fit, else nothing. One round trip,
        none for a deployment without limits."""
        if not deployment.limits.rpm and not deployment.limits.tpm:
            return ALLOWED
        try:
            allowed, retry_ms, which, reserved = await self._run("acquire", deployment, tokens)
        except RedisError as exc:
            log.warning("rate limit unchecked: Redis failed", deployment=deployment.name, error=repr(exc))
            return ALLOWED
        if allowed:
            return Verdict(True, reserved_tokens=int(reserved))
        return Verdict(False, retry_after_s=int(retry_ms) / 1000, limit=_text(which))

    async def settle(self, deployment: Deployment, reserved: int, actual: int) -> None:
        """Replace the call's reserved tokens by the `actual` ones it used. No-op without tpm."""
        if not deployment.limits.tpm or actual == reserved:
            return
        try:
            await self._run("settle", deployment, actual - reserved)
        except RedisError as exc:
            log.warning("rate limit not settled: Redis failed", deployment=deployment.name, error=repr(exc))

    async def _run(self, op: str, deployment: Deployment, tokens: int) -> list[Any]:
        now = "" if self._clock is None else repr(self._clock() * 1000)
        args = [op, deployment.limits.rpm or 0, deployment.limits.tpm or 0, tokens, now]
        return await self._script(keys=[ratelimit(deployment.name)], args=args)  # type: ignore[no-any-return]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def estimate_tokens(params: dict[str, Any]) -> int:
    """What a chat-completions request will cost against tpm, before it is sent: the text of its
    messages / CHARS_PER_TOKEN plus its completion limit (DEFAULT_COMPLETION_TOKENS if unset)."""
    limit = params.get("max_completion_tokens") or params.get("max_tokens") or DEFAULT_COMPLETION_TOKENS
    return prompt_tokens(params) + int(limit)


def prompt_tokens(params: dict[str, Any]) -> int:
    """The prompt part of estimate_tokens(): what a call that never said its usage is charged for
    its prompt when it is settled."""
    chars = sum(_text_length(message) for message in params.get("messages") or ())
    return math.ceil(chars / CHARS_PER_TOKEN)


def _text_length(message: dict[str, Any]) -> int:
    content = message.get("content")
    length = len(content) if isinstance(content, str) else sum(_part_length(part) for part in _parts(content))
    for tool_call in message.get("tool_calls") or ():
        length += len(str((tool_call.get("function") or {}).get("arguments") or ""))
    return length


def _parts(content: object) -> Iterable[dict[str, Any]]:
    return [part for part in content if isinstance(part, dict)] if isinstance(content, list) else []


def _part_length(part: dict[str, Any]) -> int:
    text = part.get("text")
    return len(text) if isinstance(text, str) else 0


@dataclass(frozen=True)
class Admitted:
    call: Call  # already counted in flight; end it (with call: ...)
    reserved_tokens: int  # for limiter.settle()


async def admit(
    balancer: Balancer, limiter: RateLimiter, tokens: int, exclude: Collection[str] = ()
) -> Admitted | RateLimited | NoneAvailable:
    """The balancer's choice, admitted by the shared rate limit: one round trip per deployment tried.

    A deployment Redis refuses is skipped by this router until its retry-after and the next choice is
    tried; each deployment is asked at most once per admission. The call is counted in flight before
    the round trip, so concurrent admissions cannot overshoot max_concurrent while they wait for it.
    """
    refused: dict[str, float] = {}
    while True:
        choice = balancer.choose({*exclude, *refused})
        if not isinstance(choice, Picked):
            return _refusal(choice, refused)
        call = choice.deployment.start()
        verdict = await limiter.acquire(choice.deployment, tokens)
        if verdict.allowed:
            return Admitted(call, verdict.reserved_tokens)
        call.throttled(verdict.retry_after_s)
        refused[choice.deployment.name] = verdict.retry_after_s


def _refusal(choice: RateLimited | NoneAvailable, refused: dict[str, float]) -> RateLimited | NoneAvailable:
    """The balancer's refusal, with the deployments Redis refused during this admission as rate-limited."""
    if not refused:
        return choice
    reasons = {**choice.reasons, **dict.fromkeys(refused, Unavailable.RATE_LIMITED)}
    waits = [*refused.values(), *([choice.retry_after_s] if isinstance(choice, RateLimited) else [])]
    return RateLimited(min(waits), reasons)
