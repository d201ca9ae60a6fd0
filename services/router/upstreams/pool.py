"""A tier as a pool of deployments: choose one, check its rate limit, call it, retry, fall back.

`Pool.open(session, params)` is what `services.router.upstream.open_chunks` returns: an async context
manager yielding the chosen deployment's checked chunks, as the transport's `open_stream` does for
one deployment. Before the first chunk reaches the caller, a failure is not the caller's problem:

- the balancer (balance.py) picks a deployment that can take a call (breaker, max_concurrent, rate
  limit), the shared rate limit (ratelimit.py) admits it or moves to the next;
- a retryable failure (connect error, timeout before the first byte, 408/409/429/5xx) is recorded on
  the deployment (breaker, error window; a 429 skips it for its Retry-After) and the call is tried
  again after a jittered exponential backoff, on another deployment while one is untried, up to
  `retries` more times; then along the tier's `fallbacks` (other tiers, or named deployments), each
  with its own retries. A deployment that asked us to wait (Retry-After) is waited for only when
  nothing else can take the call and the wait fits the request's deadline;
- with a `hedge` policy (hedge.py: a fixed delay, or a percentile of the chosen deployment's recent
  TTFT), a call with no first chunk by then is started again on a second deployment: the first to
  produce a chunk wins, the other is cancelled at once (its connection closed).

"The first chunk" here is the first that carries a token: text, a tool call, log-probs or a finish
(`_head`). The role-only chunks an OpenAI stream opens with come before it and say nothing yet, so a
stream that fails after them (an error event, a cut) is still retried and fallen back.

Once the first chunk is out, the stream is the caller's: a failure after it is raised as it is, never
retried (the caller has begun to show it). Leaving the block after the first chunk without an error
counts as a success for the deployment (a drafter aborted by escalation answered fine).

The deadline is the request's (ChatRequest.deadline, wall clock), set per request task by the worker
through `REQUEST_DEADLINE`; without one, retries stop after `DEFAULT_BUDGET_S`.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from services.router.upstreams.balance import Balancer, NoneAvailable, Picked, RateLimited
from services.router.upstreams.base import Provider, Target
from services.router.upstreams.deployment import Call, Deployment
from services.router.upstreams.errors import UpstreamError, UpstreamStatusError
from services.router.upstreams.hedge import HedgePolicy
from services.router.upstreams.ratelimit import RateLimiter, admit, estimate_tokens, prompt_tokens
from services.router.upstreams.transport import open_stream

REQUEST_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("request_deadline", default=0.0)
DEFAULT_BUDGET_S = 30.0  # no request deadline known: retries stop this long after the first attempt
MAX_BACKOFF_S = 5.0
THROTTLE_DEFAULT_S = 1.0  # a 429 without Retry-After skips the deployment this long
HEALTHY_4XX = frozenset(range(400, 500)) - {401, 403, 408, 409, 429}  # the request's fault, not the deployment's

Chunks = AsyncIterator[dict[str, Any]]
# (tier, deployment, outcome): metrics. Outcomes of a call: succeeded, failed, failed_mid_stream,
# throttled, rejected, abandoned; and: retried (the deployment a retry goes to), hedged / hedge_won /
# hedge_lost, hedge_wasted_tokens (amount: the cancelled loser's estimated prompt tokens, which a
# provider may bill though nothing came back), fallback (deployment = the fallback pool's name).


class Observer(Protocol):
    def __call__(self, tier: str, deployment: str, outcome: str, amount: int = 1) -> None: ...


@dataclass(eq=False)
class Member:
    """One deployment of a pool: its per-router state (deployment.py) and how to reach it."""

    state: Deployment
    target: Target
    provider: Provider
    continuation: str = "instruction"

    @property
    def name(self) -> str:
        return self.state.name


@dataclass(eq=False)
class Pool:
    name: str  # the tier (or, for a fallback to one deployment, that deployment)
    members: list[Member]
    balancer: Balancer
    retries: int = 2
    backoff_s: float = 0.1
    hedge: HedgePolicy | None = None
    limiter: RateLimiter | None = None
    fallbacks: list[Pool] = field(default_factory=list)
    observe: Observer | None = None
    _by_state: dict[Deployment, Member] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._by_state = {member.state: member for member in self.members}

    def member(self, name: str) -> Member | None:
        return next((member for member in self.members if member.name == name), None)

    def only(self, name: str) -> Pool:
        """A pool of one of this pool's deployments (the same state): a fallback or an explicit backend."""
        member = self.member(name)
        if member is None:
            raise KeyError(name)
        return Pool(name, [member], Balancer([member.state], self.balancer.strategy), self.retries, self.backoff_s,
                    None, self.limiter, [], self.observe)

    def open(self, session: aiohttp.ClientSession, params: dict[str, Any]) -> AbstractAsyncContextManager[Chunks]:
        """`async with pool.open(session, params) as chunks`: see the module docstring. Raises UpstreamError."""
        return _open(self, session, params)

    def hedge_delay_s(self, member: Member) -> float | None:
        """How long a call on `member` waits for its first chunk before it is hedged; None: never."""
        if self.hedge is None or len(self.members) < 2:
            return None
        return self.hedge.delay_s(member.state.ttft)

    def status(self) -> dict[str, Any]:
        """This router's view of the pool's deployments (GET /status), with each one's current hedge
        delay (`hedge_after_ms`, null: its calls are not hedged now) and its TTFT sample's size."""
        return {"deployments": [{**member.state.status(), "model": member.target.model,
                                 "provider": member.provider.name, "max_concurrent": member.state.max_concurrent,
                                 "hedge_after_ms": _ms(self.hedge_delay_s(member)),
                                 "ttft_samples": len(member.state.ttft)}
                                for member in self.members],
                "fallbacks": [pool.name for pool in self.fallbacks],
                "hedge_after": None if self.hedge is None else self.hedge.describe()}


@dataclass
class _Opened:
    """A stream whose first chunk has come: the block that holds its connection, and the chunks read
    so far (the first with a token, after any role-only ones)."""

    member: Member
    call: Call
    context: AbstractAsyncContextManager[Chunks]
    chunks: Chunks
    head: list[dict[str, Any]]
    reserved_tokens: int = 0
    prompt_tokens: int = 0  # the estimate's prompt part: what a stream that never told its usage cost
    received: int = 0  # chunks with content read so far (about one token each)
    usage: dict[str, Any] | None = None

    def read(self, chunk: dict[str, Any]) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        elif chunk.get("choices"):
            self.received += 1

    def used_tokens(self) -> int:
        """What the call cost against tpm: its usage when the stream said, else an estimate (a stream
        left early, a drafter aborted by escalation, never says)."""
        if self.usage is not None:
            return int(self.usage.get("prompt_tokens") or 0) + int(self.usage.get("completion_tokens") or 0)
        return self.prompt_tokens + self.received


class Stream:
    """What `Pool.open` yields: the chunks of the deployment that took the call (after retries, hedges
    and fallbacks), and `member`, which deployment that is (its name, model and price: what the call
    is accounted at)."""

    __slots__ = ("_chunks", "member")

    def __init__(self, member: Member, chunks: Chunks) -> None:
        self.member = member
        self._chunks = chunks

    def __aiter__(self) -> Stream:
        return self

    def __anext__(self) -> Awaitable[dict[str, Any]]:
        return self._chunks.__anext__()


@asynccontextmanager
async def _open(pool: Pool, session: aiohttp.ClientSession, params: dict[str, Any]) -> AsyncIterator[Stream]:
    opened = await _first_chunk(pool, session, params)
    failed: BaseException | None = None
    try:
        yield Stream(opened.member, _rest(opened))
    except UpstreamError as exc:
        failed = exc
        raise
    finally:
        await _finish(pool, opened, failed)


async def _rest(opened: _Opened) -> Chunks:
    """The chunks read so far again, then the rest of the stream: what the caller reads."""
    for chunk in opened.head:
        opened.read(chunk)
        yield chunk
    async for chunk in opened.chunks:
        opened.read(chunk)
        yield chunk


async def _finish(pool: Pool, opened: _Opened, failed: BaseException | None) -> None:
    """Close the connection and give the deployment its verdict (after the first chunk: failed only
    on an upstream error; a caller that left early is no fault of the deployment)."""
    try:
        await opened.context.__aexit__(None, None, None)
    finally:
        _settle(pool, opened.call, opened.reserved_tokens, opened.used_tokens())
        if isinstance(failed, UpstreamError):
            _verdict(opened.call, failed)
            _note(pool, opened.member, "failed_mid_stream")
        else:
            opened.call.succeeded()
            _note(pool, opened.member, "succeeded")


async def _first_chunk(pool: Pool, session: aiohttp.ClientSession, params: dict[str, Any]) -> _Opened:
    """Try the pool, then its fallbacks, until one deployment produced a first chunk."""
    deadline = _deadline()
    tokens = estimate_tokens(params) if pool.limiter is not None else 0
    last: UpstreamError | None = None
    for candidate in (pool, *pool.fallbacks):
        if candidate is not pool and pool.observe is not None:
            pool.observe(pool.name, candidate.name, "fallback")
        try:
            return await _try_pool(candidate, session, params, tokens, deadline)
        except UpstreamError as exc:
            last = exc
            if not _worth_falling_back(exc):
                raise
    assert last is not None
    raise last


def _worth_falling_back(exc: UpstreamError) -> bool:
    """Any failure before the first chunk is worth another deployment, except a request the upstream
    refused as bad (400, 404, 413, 422): it fails the same everywhere."""
    return exc.retryable or exc.status is None or exc.status not in HEALTHY_4XX


async def _try_pool(pool: Pool, session: aiohttp.ClientSession, params: dict[str, Any], tokens: int,
                    deadline: float) -> _Opened:
    tried: set[str] = set()
    last: UpstreamError | None = None
    for attempt in range(pool.retries + 1):
        if attempt and not await _backoff(pool, attempt, deadline):
            break
        admitted = await _admit(pool, tokens, tried, deadline)
        if isinstance(admitted, UpstreamError):
            if last is None or admitted.status == 429:
                last = admitted
            break
        call, reserved = admitted
        tried.add(call.deployment.name)
        if attempt:
            _note(pool, pool._by_state[call.deployment], "retried")
        try:
            return await _attempt_hedged(pool, session, params, tokens, call, reserved, tried)
        except UpstreamError as exc:
            last = exc
            if not _worth_falling_back(exc):
                raise
    assert last is not None
    raise last


async def _admit(pool: Pool, tokens: int, tried: set[str], deadline: float) -> tuple[Call, int] | UpstreamError:
    """A deployment admitted for the call, preferring untried ones; waits for a rate limit or an
    upstream's Retry-After only when nothing else can take the call and the wait fits the deadline."""
    while True:
        choice = await _choose(pool, tokens, tried)
        if choice is None and tried:
            choice = await _choose(pool, tokens, set())  # every deployment tried: again from the best
        if isinstance(choice, tuple):
            return choice
        wait = choice.retry_after_s if choice is not None else None
        if isinstance(choice, RateLimited) and wait is not None and time.time() + wait < deadline:
            await asyncio.sleep(wait)
            continue
        return _refused(pool, choice)


async def _choose(pool: Pool, tokens: int, exclude: set[str]) -> tuple[Call, int] | RateLimited | NoneAvailable | None:
    """One admission (balancer + shared rate limit); None when only excluded deployments remain."""
    if pool.limiter is not None:
        admitted = await admit(pool.balancer, pool.limiter, tokens, exclude)
        if isinstance(admitted, RateLimited | NoneAvailable):
            return _none_if_only_excluded(admitted, exclude)
        return admitted.call, admitted.reserved_tokens
    choice = pool.balancer.choose(exclude)
    if isinstance(choice, Picked):
        return choice.deployment.start(), 0
    return _none_if_only_excluded(choice, exclude)


def _none_if_only_excluded(choice: RateLimited | NoneAvailable,
                           exclude: set[str]) -> RateLimited | NoneAvailable | None:
    if exclude and isinstance(choice, NoneAvailable) and any(name in exclude for name in choice.reasons):
        return None if all(str(why) == "excluded" for why in choice.reasons.values()) else choice
    return choice


def _refused(pool: Pool, choice: RateLimited | NoneAvailable | None) -> UpstreamError:
    """Why no deployment of the pool could take the call, as the error the client gets."""
    if isinstance(choice, RateLimited):
        return UpstreamStatusError(
            f"every deployment is at its rate limit; retry in {choice.retry_after_s:.3g} s", tier=pool.name,
            status=429, retry_after_s=choice.retry_after_s, retryable=True,
            body={"message": "Rate limit reached for every deployment of this tier.", "type": "rate_limit_error",
                  "code": "rate_limit_exceeded"})
    reasons = ", ".join(f"{name}: {why}" for name, why in (choice.reasons.items() if choice else ()))
    return UpstreamStatusError(f"no deployment can take the call ({reasons or 'none'})", tier=pool.name,
                               status=503, retryable=True,
                               retry_after_s=choice.retry_after_s if isinstance(choice, NoneAvailable) else None)


async def _backoff(pool: Pool, attempt: int, deadline: float) -> bool:
    """Sleep before attempt `attempt` (1, 2, ...): jittered exponential; False when past the deadline."""
    delay = min(MAX_BACKOFF_S, pool.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
    if time.time() + delay >= deadline:
        return False
    await asyncio.sleep(delay)
    return True


async def _attempt_hedged(pool: Pool, session: aiohttp.ClientSession, params: dict[str, Any], tokens: int,
                          call: Call, reserved: int, tried: set[str]) -> _Opened:
    """One attempt; with hedging, a second deployment joins when the first is slow to its first chunk."""
    primary = pool._by_state[call.deployment]
    delay = pool.hedge_delay_s(primary)
    if delay is None:  # not hedged: awaited in this task (a task of its own would cost a loop turn)
        return await _attempt(pool, session, params, call, reserved)
    first = asyncio.ensure_future(_attempt(pool, session, params, call, reserved))
    done, _ = await asyncio.wait({first}, timeout=delay)
    if done:
        return first.result()
    choice = await _choose(pool, tokens, {*tried})
    if not isinstance(choice, tuple):
        return await first
    tried.add(choice[0].deployment.name)
    hedge = pool._by_state[choice[0].deployment]
    _note(pool, hedge, "hedged")
    second = asyncio.ensure_future(_attempt(pool, session, params, *choice))
    losers = {first: primary, second: hedge}
    return await _race(pool, first, second, losers, prompt_tokens(params), call)


async def _race(pool: Pool, first: asyncio.Future[_Opened], second: asyncio.Future[_Opened],
                members: dict[asyncio.Future[_Opened], Member], prompt: int, primary: Call) -> _Opened:
    """The first of two attempts to produce a chunk; the other is cancelled (its connection closed).
    One that fails leaves the other to finish; both failing raises the later failure. The loser's
    prompt is counted as wasted (a provider may bill it though nothing of it is used); a primary
    that lost leaves the time it ran in its deployment's TTFT sample, as a lower bound (hedge.py)."""
    pending = {first, second}
    error: BaseException | None = None
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            opened = [task for task in (first, second) if task in done and task.exception() is None]
            if opened:
                winner, *extra = opened
                for both in extra:  # both had their first chunk in the same instant: keep one
                    await _discard(pool, both.result(), prompt)
                _note(pool, members[winner], "hedge_won" if winner is second else "hedge_lost")
                if winner is second:
                    primary.outrun()
                for loser in pending:
                    _note(pool, members[loser], "hedge_wasted_tokens", prompt)
                return winner.result()
            error = next(task.exception() for task in done)
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    assert error is not None
    raise error


async def _discard(pool: Pool, opened: _Opened, prompt: int) -> None:
    """Close a stream that opened but is not wanted (a hedge that lost by a hair)."""
    try:
        await opened.context.__aexit__(None, None, None)
    finally:
        opened.call.abandoned()
        _note(pool, opened.member, "abandoned")
        _note(pool, opened.member, "hedge_wasted_tokens", prompt)
        _settle(pool, opened.call, opened.reserved_tokens, opened.prompt_tokens + 1)


async def _attempt(pool: Pool, session: aiohttp.ClientSession, params: dict[str, Any], call: Call,
                   reserved: int) -> _Opened:
    """Open the admitted deployment's stream and read its first chunk; on failure the call gets its
    verdict and the error is raised; cancelled (a hedge that lost), it is abandoned."""
    member = pool._by_state[call.deployment]
    context = open_stream(session, member.provider, member.target, {**params, "model": member.target.model})
    try:
        chunks = await context.__aenter__()
        try:
            head = await _head(chunks)
        except BaseException as exc:
            await context.__aexit__(type(exc), exc, exc.__traceback__)
            raise
    except UpstreamError as exc:
        _verdict(call, exc)
        _note(pool, member, _outcome(exc))
        _settle(pool, call, reserved, 0)
        raise
    except StopAsyncIteration:
        call.failed()
        _note(pool, member, "failed")
        _settle(pool, call, reserved, 0)
        raise UpstreamStatusError("ended its stream before any chunk", status=502).at(
            pool.name, member.name, member.target.model) from None
    except BaseException:
        call.abandoned()
        _note(pool, member, "abandoned")
        _settle(pool, call, reserved, prompt_tokens(params) if reserved else 0)
        raise
    call.first_token()
    return _Opened(member, call, context, chunks, head, reserved, prompt_tokens(params) if reserved else 0)


async def _head(chunks: Chunks) -> list[dict[str, Any]]:
    """The stream's chunks up to its first with a token; all of them when it ends before one (an
    empty answer). StopAsyncIteration when it has no chunk at all."""
    head = [await anext(chunks)]
    while _preamble(head[-1]):
        try:
            head.append(await anext(chunks))
        except StopAsyncIteration:
            break
    return head


def _preamble(chunk: dict[str, Any]) -> bool:
    """A chunk that carries no token yet: choices whose delta holds nothing but the role (or empty
    content), with no log-probs and no finish_reason, and no usage."""
    choices = chunk.get("choices")
    if not choices or chunk.get("usage"):
        return False
    for choice in choices:
        if choice.get("finish_reason") or (choice.get("logprobs") or {}).get("content"):
            return False
        if any(value for key, value in (choice.get("delta") or {}).items() if key != "role"):
            return False
    return True


def _settle(pool: Pool, call: Call, reserved: int, actual: int) -> None:
    """Replace the tpm estimate the call reserved by what it used (or charge the overrun), in the
    router's share of the deployment (ratelimit.py): no caller waits a Redis round trip for it."""
    if pool.limiter is None or not reserved or reserved == actual:
        return
    pool.limiter.correct(call.deployment, reserved, actual)


def _verdict(call: Call, exc: UpstreamError) -> None:
    """What a failure says about the deployment (deployment.py): a 429 skips it for its Retry-After,
    the request's own 4xx is no fault of it, everything else counts towards its breaker."""
    if exc.status == 429:
        call.throttled(exc.retry_after_s or THROTTLE_DEFAULT_S)
    elif exc.status in HEALTHY_4XX:
        call.succeeded()
    else:
        call.failed()


def _outcome(exc: UpstreamError) -> str:
    if exc.status == 429:
        return "throttled"
    return "rejected" if exc.status in HEALTHY_4XX else "failed"


def _note(pool: Pool, member: Member, outcome: str, amount: int = 1) -> None:
    if pool.observe is not None:
        pool.observe(member.target.tier or pool.name, member.name, outcome, amount)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _deadline() -> float:
    """The request's deadline (wall clock), or the default budget from now."""
    return REQUEST_DEADLINE.get() or time.time() + DEFAULT_BUDGET_S
