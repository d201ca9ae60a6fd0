"""Upstream rate limits (rpm / tpm per deployment) enforced across all routers through Redis.

One Lua script (ratelimit.lua, after the GCRA functions of shared/gcra.lua that the gateway's
per-key limits share) keeps, per deployment, one hash under `draftgate:ratelimit:<name>`
(shared/keys.py) with two GCRA buckets (the continuous-state leaky bucket form: what was charged,
draining at limit / 60 s, refused when it would overflow a bucket of size `limit`). A whole
minute's worth may go at once, then calls pass at the limit's rate: the token-bucket shape
providers themselves enforce (Anthropic documents its limits as token buckets). The script reads
Redis's clock (TIME), so routers on machines whose clocks disagree share one.

Shares: a router does not ask Redis for every call. A call Redis admits also takes a *share* of the
room left in the buckets, one SHARE_DIVISOR-th of it (rounded down; none unless it holds at least one
more such call), charged to the buckets like the call itself; the router admits its next calls from
the share without a round trip, for at most SHARE_S. What a share did not use goes back to the
buckets with the router's next call to Redis, or on its own when the share expires unused (within
SHARE_S), or when the router stops. So:
  - the buckets never admit more than the limit, however many routers hold shares: a share is
    charged before it is used;
  - near the limit shares are empty (less than SHARE_DIVISOR left: none), so every call asks Redis and
    the limit is exact there, as before;
  - far from it, a busy router asks Redis about once per SHARE_DIVISOR-th of the room or per SHARE_S,
    whichever comes first: the check is no longer a round trip in series with most calls;
  - the price: another router may be refused while a share it cannot see still has room, for at most
    SHARE_S (and at most 1/SHARE_DIVISOR of the room per router).

A refused check charges nothing and says how long until the call would fit (`retry_after_s`); the
caller then skips the deployment for that long without asking Redis again (Deployment.rate_limited).

tpm works by reservation. Before the call, `acquire` charges an estimate: estimate_tokens(), the
prompt's characters / 4 plus max_tokens (OpenAI too charges max_tokens and a character-based guess
at the prompt against tpm when a request arrives), at most tpm, so that a request larger than the
whole bucket waits for an empty bucket rather than forever. After the call, `correct` replaces the
estimate by the actual usage (prompt + completion tokens; 0 for a call that failed before producing
anything) in the router's share: a refund is room the router's next calls use, an overrun a debt
they pay, and both reach Redis with the share (without a current share: with the router's next call
to Redis, or on their own within SHARE_S). A correction of REFUND_AT_ONCE of the tpm or more is given
back at once (in the background), so a refund that matters to another router is not held.

If Redis fails, the check lets the call through (logged): an outage of the limiter must not stop
traffic that the bus, which needs Redis too, has already delivered. What a share would have given
back is then lost; it drains from the buckets within the minute, as anything charged does.

How a caller uses it:

    limiter = RateLimiter(redis)
    await limiter.prepare()                     # once, at start-up
    admitted = await admit(balancer, limiter, estimate_tokens(params), exclude=tried)
    match admitted:
        case Admitted(call, reserved):
            with call: ...                      # send; call.succeeded() / call.failed() ...
            limiter.correct(call.deployment, reserved, actual_tokens)
        case RateLimited(retry_after_s): ...    # every deployment at its limit: 429, Retry-After
        case NoneAvailable(): ...               # 503
    await limiter.close()                       # at shutdown: the shares go back
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.router.upstreams.balance import Balancer, NoneAvailable, Picked, RateLimited
from services.router.upstreams.deployment import Call, Deployment, Limits, Unavailable
from shared.gcra import with_gcra
from shared.keys import ratelimit

log = structlog.get_logger(__name__)

SCRIPT = with_gcra(Path(__file__).with_name("ratelimit.lua"))
CHARS_PER_TOKEN = 4  # a rough English/code average; correct() replaces the estimate
DEFAULT_COMPLETION_TOKENS = 512  # reserved for a request that sets no max_tokens
SHARE_DIVISOR = 16  # an admitted call takes this fraction of the room left as the router's share
SHARE_S = 0.25  # how long a router admits from its share before asking Redis again
REFUND_AT_ONCE = 0.01  # a correction this large a part of the tpm goes back to Redis at once


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: float = 0.0  # > 0 when refused
    limit: str | None = None  # which limit refused: "rpm" | "tpm"
    reserved_tokens: int = 0  # what was charged to the tpm bucket (correct() from this)


ALLOWED = Verdict(True)


@dataclass
class Share:
    """What one router holds of a deployment's buckets, charged in Redis and not yet used: calls it
    admits without asking, until `until` (time.monotonic()). tokens < 0: an overrun not yet charged."""

    requests: int = 0
    tokens: int = 0
    until: float = -math.inf
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one call to Redis at a time per deployment
    timer: asyncio.TimerHandle | None = None

    def take(self, limits: Limits, tokens: int) -> bool:
        """One call and `tokens` from the share, if it is current and holds both."""
        if time.monotonic() >= self.until:
            return False
        if (limits.rpm and self.requests < 1) or (limits.tpm and self.tokens < tokens):
            return False
        if limits.rpm:
            self.requests -= 1
        self.tokens -= tokens
        return True

    def empty(self) -> tuple[int, int]:
        """What the share holds, to give back: it holds nothing afterwards."""
        held = (self.requests, self.tokens)
        self.requests = self.tokens = 0
        return held


class RateLimiter:
    """The shared limits, seen from one router. `clock` (seconds) replaces Redis's clock in tests;
    `share_divisor` 0 takes no shares (every call asks Redis)."""

    def __init__(self, redis: Redis, clock: Callable[[], float] | None = None,
                 share_divisor: int = SHARE_DIVISOR, share_s: float = SHARE_S) -> None:
        self._redis = redis
        self._script = redis.register_script(SCRIPT)
        self._clock = clock
        self._divisor = share_divisor
        self._share_s = share_s
        self._shares: dict[str, Share] = {}  # by deployment name: the bucket's key in Redis
        self._deployments: dict[str, Deployment] = {}  # the latest of that name, for its limits
        self._releasing: set[asyncio.Task[None]] = set()

    async def prepare(self) -> None:
        """Load the script (at start-up), so the first check is one round trip too. After a Redis
        restart redis-py reloads it by itself (NOSCRIPT: two more round trips, once)."""
        await self._redis.script_load(SCRIPT)

    async def acquire(self, deployment: Deployment, tokens: int) -> Verdict:
        """Charge one request and `tokens` (the estimate) if both fit, else nothing: from the router's
        share when it holds them (no round trip), else in Redis (one round trip, which gives back what
        the share held and takes a new one). None for a deployment without limits."""
        limits = deployment.limits
        if not limits.rpm and not limits.tpm:
            return ALLOWED
        needed = min(tokens, limits.tpm) if limits.tpm else 0
        share = self._share(deployment)
        if share.take(limits, needed):
            return Verdict(True, reserved_tokens=needed)
        async with share.lock:
            if share.take(limits, needed):  # a call that asked while this one waited brought a share
                return Verdict(True, reserved_tokens=needed)
            given = share.empty()
            try:
                reply = await self._run("acquire", deployment, needed, given)
            except RedisError as exc:
                log.warning("rate limit unchecked: Redis failed", deployment=deployment.name, error=repr(exc))
                return ALLOWED
            allowed, retry_ms, which, reserved, share_requests, share_tokens = reply
            if not allowed:
                return Verdict(False, retry_after_s=int(retry_ms) / 1000, limit=_text(which))
            if int(share_requests) or int(share_tokens):
                share.requests += int(share_requests)
                share.tokens += int(share_tokens)
                share.until = time.monotonic() + self._share_s
                self._expire_later(deployment, share)
            return Verdict(True, reserved_tokens=int(reserved))

    def correct(self, deployment: Deployment, reserved: int, actual: int) -> None:
        """Replace a call's reserved tokens by the `actual` ones it used, in the router's share (a
        refund its next calls may use, an overrun they pay), given back with it; at once in the
        background when the correction is REFUND_AT_ONCE of the tpm or more. Without a current share it
        goes with the router's next call to Redis, or on its own within SHARE_S. No-op without tpm."""
        tpm = deployment.limits.tpm
        if not tpm or actual == reserved:
            return
        share = self._share(deployment)
        share.tokens += reserved - actual
        if abs(reserved - actual) >= tpm * REFUND_AT_ONCE:
            self._release_soon(deployment, share)
        elif share.timer is None:  # no share to take it along: with the next call to Redis, or on its own
            self._arm(deployment, share, self._share_s)

    async def settle(self, deployment: Deployment, reserved: int, actual: int) -> None:
        """correct(), then wait until what it sends to Redis (if anything) is there."""
        self.correct(deployment, reserved, actual)
        await self.drain()

    async def release(self, deployment: Deployment) -> None:
        """Give back what the router's share of the deployment holds, now."""
        await self._give_back(deployment, self._share(deployment).empty())

    async def _give_back(self, deployment: Deployment, given: tuple[int, int]) -> None:
        if given == (0, 0):
            return
        try:
            await self._run("release", deployment, 0, given)
        except RedisError as exc:  # lost: it drains from the buckets within the minute
            log.warning("rate limit share not given back: Redis failed", deployment=deployment.name,
                        requests=given[0], tokens=given[1], error=repr(exc))

    async def drain(self) -> None:
        """Wait until every share given back in the background is in Redis."""
        while self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)

    async def close(self) -> None:
        """At shutdown: every share goes back (those already going, then the rest)."""
        for share in self._shares.values():
            if share.timer is not None:
                share.timer.cancel()
        await self.drain()
        for deployment in list(self._deployments.values()):
            await self.release(deployment)

    def _share(self, deployment: Deployment) -> Share:
        self._deployments[deployment.name] = deployment
        share = self._shares.get(deployment.name)
        if share is None:
            share = self._shares[deployment.name] = Share()
        return share

    def _expire_later(self, deployment: Deployment, share: Share) -> None:
        """Give the share back when it expires, unless it has been renewed by then."""
        if share.timer is not None:
            share.timer.cancel()
        self._arm(deployment, share, self._share_s)

    def _arm(self, deployment: Deployment, share: Share, delay_s: float) -> None:
        share.timer = asyncio.get_running_loop().call_later(delay_s, self._on_expiry, deployment, share)

    def _on_expiry(self, deployment: Deployment, share: Share) -> None:
        share.timer = None
        left = share.until - time.monotonic()
        if left > 0:  # renewed meanwhile, or the loop's clock fired a hair early
            self._arm(deployment, share, left)
        elif share.lock.locked():  # a call out to Redis: it gives back what the share held; look again later
            self._arm(deployment, share, self._share_s)
        else:
            self._release_soon(deployment, share)

    def _release_soon(self, deployment: Deployment, share: Share) -> None:
        """What the share holds now leaves it at once, and goes to Redis in the background."""
        given = share.empty()
        if given == (0, 0):
            return
        task = asyncio.ensure_future(self._give_back(deployment, given))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _run(self, op: str, deployment: Deployment, tokens: int, given: tuple[int, int]) -> list[Any]:
        now = "" if self._clock is None else repr(self._clock() * 1000)
        args = [op, deployment.limits.rpm or 0, deployment.limits.tpm or 0, tokens, now, given[0], given[1],
                self._divisor]
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
    """The balancer's choice, admitted by the shared rate limit: at most one round trip per deployment
    tried (none when the router's share of it holds the call).

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
