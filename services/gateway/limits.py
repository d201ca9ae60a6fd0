"""Admission and settlement of virtual keys, cluster-wide in Redis: one EVALSHA of limits.lua per
request looks the key up and checks its models, budget, rpm and tpm (charging the request), and one
after the answer, in the background, charges its tokens (tpm) and cost (the day's and month's spend).

The admission's command can also publish the request it admits (`publish`: when nothing the gateway
does between admitting and publishing needs Redis's answer), with its session's stored turns read into
it: a request with a virtual key or a session then costs the gateway one round trip, as one without
does. A virtual key's request carries its tenant, which only Redis knows: the gateway encodes it with the
tenant an earlier admission of the key gave (KeyLimiter.tenant_of), and the script publishes only if that
is still the key's; else nothing is published and the gateway publishes itself.

The calls a gateway makes in one turn of its event loop (concurrent requests) go as one command, the
script's `batch` (KeyLimiter._send_calls, gathered by shared/redis_client.Coalescer): run in order as if
sent one after another, each with its own answer, each key's record and usage read once.

Static keys and anonymous callers cost nothing here: auth.identify settles them without Redis (in open
mode, a gateway asks whether any virtual key exists at most once a second).

tpm is charged after the answer from its usage (every upstream call made for it, aborted drafts and
wasted speculation included: what the key made draftgate spend) and checked before the next request,
which needs room for one token: a key that went over waits for its bucket to drain. Spend works the
same way against the budgets: an answer that exhausts a budget is served whole; the next request is
a 429 insufficient_quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from services.gateway.auth import KeyLookup, Principal, bearer_token, identify
from services.gateway.keys.model import period_ends, periods
from services.gateway.limits_reply import Refused, admitted
from services.gateway.outcome import Outcome
from services.gateway.state import ACCESS, CONFIG, METRICS, REDIS
from shared.bus import Publication
from shared.config import Config
from shared.errors import ApiError, Unavailable
from shared.gcra import with_gcra
from shared.keys import VIRTUAL_KEY_IDS, key_usage, virtual_key
from shared.messages import Account, Tier
from shared.redis_client import Coalescer, Command, pipelined
from shared.sessions import MAX_STORED_TURNS

log = structlog.get_logger(__name__)

SCRIPT = with_gcra(Path(__file__).with_name("limits.lua"))
PERIOD_GRACE_S = 3600  # a period's spend is kept this long past its end (gateways' clocks may disagree)
# Open mode: how long a gateway trusts what it last learned about whether any virtual key exists. For
# at most this long after the first key is made, a gateway may still serve a token that is no key.
OPEN_MODE_RECHECK_S = 1.0
KNOWN_TENANTS = 100_000  # the virtual keys whose tenant a gateway remembers (then it forgets them all)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class KeyLimiter:
    """The key script, seen from one gateway. `clock` (seconds) replaces Redis's clock in tests."""

    def __init__(self, redis: Redis, clock: Callable[[], float] | None = None) -> None:
        self._redis = redis
        self._script = redis.register_script(SCRIPT)
        self._calls: Coalescer[ScriptCall] = Coalescer(self._send_calls)  # a turn's calls: one command
        self._clock = clock
        # Open mode: whether any virtual key exists, as the script last said, and until when that is
        # believed (time.monotonic()). A token that is no virtual key then costs no round trip.
        self._keys_exist = False
        self._believed_until = -math.inf
        self._tenants: dict[str, str] = {}  # a virtual key's id -> its record's tenant, as admissions said

    def tenant_of(self, key_id: str) -> str | None:
        """The tenant of a virtual key this gateway admitted before (None: not known here yet)."""
        return self._tenants.get(key_id)

    async def prepare(self) -> None:
        """Load the script at start-up, so the first request is one round trip too."""
        await self._redis.script_load(SCRIPT)

    async def admit(self, lookup: KeyLookup, targets: Sequence[str] | None, token_given: bool,
                    now: float | None = None) -> Principal | Refused:
        """`targets`: the names the request goes by, checked against the key's models and charged one
        request; None: only authenticate (nothing charged)."""
        return (await self.admit_along(lookup, targets, token_given, now=now)).verdict

    async def admit_along(self, lookup: KeyLookup, targets: Sequence[str] | None, token_given: bool, *,
                          charges: Sequence[Charge] = (), session_key: str | None = None,
                          publish: Publication | None = None, tenant: str = "",
                          now: float | None = None) -> Admission:
        """admit(), with what else the request needs from Redis in the same command: the charges of
        answers finished before it (made first, so a budget they exhaust refuses this request), its
        session's stored turns, and, with `publish`, the request published once admitted (its turns in
        it, not returned), if the key's tenant is `tenant` (the record's, without X-Tenant-ID). Raises
        RedisError when Redis failed (the charges are then lost, never retried: a retry could charge twice)."""
        when = self._now_s(now)
        if lookup.open and not lookup.virtual and time.monotonic() < self._believed_until:
            count = b"1" if self._keys_exist else b"0"
            verdict = admitted(lookup, token_given, [b"unknown", count])
            if charges:
                try:
                    await self.settle_many(charges, when)
                except RedisError as exc:
                    log.warning("key usage not charged: Redis failed", charges=len(charges), error=repr(exc))
            if session_key is None:
                return Admission(verdict)
            try:
                return Admission(verdict, await self._redis.lrange(session_key, -MAX_STORED_TURNS, -1))
            except RedisError as exc:
                raise SessionReadFailed(repr(exc)) from exc
        op, args = ("auth", []) if targets is None else ("admit", list(targets))
        if targets is None:
            publish = None
        keys = [*_keys(lookup.digest, lookup.key_id), session_key or "", _stream(publish)]
        reply = await self._evalsha(keys, [op, self._now_ms(), *_publication(publish, tenant)], charges, when, args)
        verdict = _text(reply[0])
        if lookup.open and verdict == "unknown":
            self._keys_exist = int(_text(reply[1]) or 0) > 0
            self._believed_until = time.monotonic() + OPEN_MODE_RECHECK_S
        elif len(reply) > 3 and verdict not in ("forbidden", "unknown"):  # the record was read: its tenant
            if len(self._tenants) >= KNOWN_TENANTS:
                self._tenants.clear()
            self._tenants[lookup.key_id] = _text(reply[2])
        turns = reply[12] if session_key is not None and len(reply) > 12 and isinstance(reply[12], list) else None
        entry_id = reply[13] if len(reply) > 13 else None
        return Admission(admitted(lookup, token_given, reply), turns, entry_id)

    async def publish_session(self, session_key: str, publish: Publication) -> bytes:
        """For a caller admitted without Redis (a static key, anonymous): its session's stored turns read
        into the request and the request published, in one command; the entry's id."""
        keys = ["", "", "", session_key, publish.stream]
        reply = await self._evalsha(keys, ["publish", self._now_ms(), *_publication(publish, "")], (), time.time(), [])
        return reply[1]

    async def settle(self, principal: Principal, tokens: int, cost_usd: float, now: float | None = None) -> None:
        await self.settle_many([Charge(principal, tokens, cost_usd)], now)

    async def settle_many(self, charges: Sequence[Charge], now: float | None = None) -> None:
        """Answers' charges in one round trip: one command, SETTLE_CHUNK charges at most (then the next)."""
        when = self._now_s(now)
        for start in range(0, len(charges), SETTLE_CHUNK):
            await self._evalsha(["", "", "", "", ""], ["settle", self._now_ms(), "", "", ""],
                                charges[start:start + SETTLE_CHUNK], when, [])

    async def _evalsha(self, keys: list[str], head: list[str], charges: Sequence[Charge], when: float,
                       tail: list[str]) -> list[Any]:
        """The script, by its SHA (loaded again if a restarted Redis lost it), as one command: `keys`
        (the admission's five), ARGV `head` (op, now, and the publication's three), the UTC day and month
        of `when` and how long a usage hash first written now is kept, the charges (their keys after
        `keys`), `tail`."""
        _, month_end = period_ends(when)
        day, month = periods(when)
        charge_keys: list[str] = []
        charge_args: list[object] = []
        for charge in charges:
            limits = charge.principal.limits
            charge_keys.append(key_usage(charge.principal.key_id))
            charge_args += [limits.rpm or 0, limits.tpm or 0, charge.tokens, repr(charge.cost_usd)]
        periods_args = [day, month, math.ceil(month_end - when) + PERIOD_GRACE_S]
        return await self._calls.call(ScriptCall([*keys, *charge_keys],
                                                 [*head, *periods_args, len(charges), *charge_args, *tail]))

    async def _send_calls(self, calls: list[ScriptCall]) -> list[Any]:
        """The calls of one turn (Coalescer), as few commands as their size allows (a `batch` of the
        script, or a call alone), in one round trip; each call's answer, or the refusal of its command."""
        groups = _batches(calls)
        commands = [self._command(group) for group in groups]
        replies = await pipelined(self._redis, commands)
        unloaded = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unloaded:  # a restarted Redis: those did not run; load the script and send them again
            await self.prepare()
            again = await pipelined(self._redis, [commands[index] for index in unloaded])
            for index, reply in zip(unloaded, again, strict=True):
                replies[index] = reply
        answers: list[Any] = []
        for group, reply in zip(groups, replies, strict=True):
            if isinstance(reply, ResponseError) or len(group) == 1:
                answers += [reply] * len(group)
            else:  # a call of the batch that raised: its caller hears it as the call alone would have
                answers += [ResponseError(_text(answer[1])) if answer[:1] == [b"failed"] else answer
                            for answer in reply]
        return answers

    def _command(self, group: list[ScriptCall]) -> Command:
        if len(group) == 1:
            (call,) = group
            return ("EVALSHA", self._script.sha, len(call.keys), *call.keys, *call.args)
        clock, *periods = _header(group[0])  # the same for every call of the group (_batches)
        header = ["batch", clock, "", "", "", *periods, len(group)]
        keys = [key for call in group for key in call.keys]
        args = [arg for call in group for arg in (len(call.keys), len(call.args), *call.args)]
        return ("EVALSHA", self._script.sha, len(keys), *keys, *header, *args)

    async def drain(self) -> None:
        """At shutdown: the round trips under way finish."""
        await self._calls.drain()

    def _now_ms(self) -> str:
        return "" if self._clock is None else repr(self._clock() * 1000)

    def _now_s(self, now: float | None) -> float:
        if now is not None:
            return now
        return time.time() if self._clock is None else self._clock()


@dataclass(frozen=True)
class ScriptCall:
    """One call of the key script: its KEYS and its ARGV (ARGV[1] the op, ARGV[2] the clock, ARGV[6..8] the
    periods: limits.lua's header)."""

    keys: list[str]
    args: list[Any]


BATCH_MAX_ARGS = 4000  # the script's KEYS and ARGV in one batch at most (a settle of 500 charges has ~2,000)


def _batches(calls: list[ScriptCall]) -> list[list[ScriptCall]]:
    """The calls in order, grouped into commands of at most BATCH_MAX_ARGS arguments (a larger call alone),
    each of one clock and one day and month (the batch's header: a call made as a day ends starts another)."""
    groups: list[list[ScriptCall]] = []
    size = BATCH_MAX_ARGS
    for call in calls:
        call_size = len(call.keys) + len(call.args) + 2
        if size + call_size > BATCH_MAX_ARGS or _header(call) != _header(groups[-1][0]):
            groups.append([])
            size = 9
        groups[-1].append(call)
        size += call_size
    return groups


def _header(call: ScriptCall) -> list[Any]:
    """What a batch takes from its first call for all: the clock (ARGV[2]) and the periods (ARGV[6..8])."""
    return [call.args[1], *call.args[5:8]]


class SessionReadFailed(RedisError):
    """The session's read failed in an admission's round trip that otherwise succeeded."""


@dataclass(frozen=True)
class Admission:
    """What the admission's round trip brought back."""

    verdict: Principal | Refused
    session_turns: list[bytes] | None = None  # the session's stored turns, when asked for, served and not published
    entry_id: bytes | None = None  # the request's entry on the stream, when the admission published it


def _stream(publish: Publication | None) -> str:
    return publish.stream if publish is not None else ""


def _publication(publish: Publication | None, tenant: str) -> list[bytes | str | int]:
    """ARGV[3..5] of the script: the request (its last msgpack value nil: the history's place), the
    stream's MAXLEN, the tenant it was encoded for."""
    if publish is None:
        return ["", "", ""]
    if publish.payload[-1:] != b"\xc0":
        raise ValueError("a request published by the key script must end in its nil `history`")
    return [publish.payload, publish.maxlen, tenant]


def _keys(digest: str, key_id: str) -> list[str]:
    return [virtual_key(digest), VIRTUAL_KEY_IDS, key_usage(key_id)]


def route_targets(tier: str, deployment: str, config: Config) -> tuple[str, ...]:
    """The names a request goes by, any of which a key's `models` may list: its tier (auto, drafter,
    heavyweight), that tier's model, and the deployment it names. A tier allows its deployments;
    auto allows auto-routed requests only (they may reach either tier)."""
    model = {Tier.DRAFTER.value: config.drafter.model, Tier.HEAVYWEIGHT.value: config.heavyweight.model}.get(tier)
    return tuple(name for name in (tier, model, deployment) if name)


SETTLE_BOUND = 10_000  # charges waiting before the next waits for a batch to go
SETTLE_CHUNK = 500  # charges per command: Lua's stack holds up to ~8000 arguments
SETTLE_DRAIN_S = 5.0  # at shutdown, the charges in flight get this long
# How long a charge waits for a request's admission to take it along before it goes on its own: the
# longest another gateway may admit a key without seeing it.
SETTLE_LINGER_S = 0.05


@dataclass(frozen=True)
class Charge:
    """What one answer costs its key: tokens against tpm, USD against the budgets."""

    principal: Principal
    tokens: int
    cost_usd: float


class Settlements:
    """Charges on their way to Redis, off the request: the finish step returns at once, and the charges
    that gathered go together: with the next request's admission (limits.admit takes them into its
    round trip, before the admission itself), or after `linger_s` by a task of their own, whichever
    comes first. A busy gateway so charges no answer with a round trip of its own, and its next request
    still sees the charges of the answers before it; another gateway sees them within `linger_s`. Past
    `bound` charges waiting, the next one waits for a batch to go (back-pressure)."""

    def __init__(self, limiter: KeyLimiter, bound: int = SETTLE_BOUND, linger_s: float = SETTLE_LINGER_S) -> None:
        self._limiter = limiter
        self._bound = bound
        self._linger_s = linger_s
        self._waiting: list[Charge] = []
        self._wake = asyncio.Event()
        self._sent = asyncio.Event()  # set after each batch: back-pressure waits for it
        self._task: asyncio.Task[None] | None = None
        self._sending: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def add(self, charge: Charge) -> None:
        while len(self._waiting) >= self._bound and self._task is not None and not self._task.done():
            self._sent.clear()
            await self._sent.wait()
        self._waiting.append(charge)
        self._wake.set()

    def take(self) -> list[Charge]:
        """The charges waiting, for a round trip that goes now (an admission's): they are its to send."""
        batch, self._waiting = self._waiting, []
        if batch:
            self._sent.set()
        return batch

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._linger_s > 0 and len(self._waiting) < self._bound:
                await asyncio.sleep(self._linger_s)
            self._sending = asyncio.ensure_future(self._send())
            await asyncio.shield(self._sending)  # stopping the task never cuts a batch short

    async def _send(self) -> None:
        batch = self.take()
        if batch:
            try:
                await self._limiter.settle_many(batch)
            except RedisError as exc:  # lost, never retried: a retry could charge twice
                log.warning("key usage not charged: Redis failed", charges=len(batch), error=repr(exc))
            except Exception:
                log.exception("key usage not charged", charges=len(batch))
        self._sent.set()

    async def drain(self, timeout_s: float) -> None:
        """At shutdown: stop the task, let a batch on its way arrive, then send what is still waiting
        (all within timeout_s)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                if self._sending is not None:
                    await self._sending
                await self._send()


LIMITER = web.AppKey("key_limiter", KeyLimiter)
SETTLING = web.AppKey("key_settlements", Settlements)


async def limiter_ctx(app: web.Application) -> AsyncIterator[None]:
    """After the Redis client (app.py's _redis_ctx), before it closes: charges in flight finish first."""
    limiter = app[LIMITER] = KeyLimiter(app[REDIS])
    settlements = app[SETTLING] = Settlements(limiter)
    try:
        await limiter.prepare()
    except RedisError as exc:  # Redis down at start: redis-py loads it on first use
        log.warning("key script not loaded", error=repr(exc))
    settlements.start()
    yield
    await settlements.drain(SETTLE_DRAIN_S)
    await limiter.drain()


class Named(Protocol):
    """Whoever records who called (chat.py's Caller): filled in as soon as the key is known, and with
    the Principal once admitted."""

    key_id: str
    tenant: str
    principal: Principal | None


def identify_request(app: web.Application, headers: Mapping[str, str]) -> Principal | KeyLookup:
    """Before the body is read: a static key or an anonymous caller is settled here, without I/O; a
    token that can be no key (keyed mode) is a 401 now; anything else needs `admit`."""
    try:
        return identify(headers, app[ACCESS].client_keys, app[CONFIG].gateway.virtual_keys)
    except ApiError:
        app[METRICS].refused.labels("auth").inc()
        raise


async def admit(app: web.Application, found: Principal | KeyLookup, targets: Sequence[str] | None,
                token_given: bool, caller: Named | None = None) -> Principal:
    """The caller, admitted: one round trip for a virtual key (none for the rest); or the ApiError
    refusing it (401, 403, 429, with its headers). `targets` None: authenticate only, nothing
    checked against limits, nothing charged. `caller` learns the key's id and tenant once the key
    is found, refused or not."""
    return (await admit_call(app, found, targets, token_given, caller)).principal


@dataclass(frozen=True)
class Admitted:
    """A caller admitted, and what else its round trip did."""

    principal: Principal
    session_turns: list[bytes] | None = None  # read for the gateway to compose (None: none asked, or published)
    entry_id: bytes | None = None  # the request's entry, when the round trip published it


async def admit_call(app: web.Application, found: Principal | KeyLookup, targets: Sequence[str] | None,
                     token_given: bool, caller: Named | None = None, session_key: str | None = None,
                     publish: Publication | None = None, tenant: str = "") -> Admitted:
    """admit(), with the request's session read in the same round trip (sessions.caller_session_key: known
    before the key is) and, with `publish`, the request published by it (KeyLimiter.admit_along; a static
    key's or an anonymous caller's only with a session to read: else there is no round trip to ride). The
    charges of answers finished before go along first. Without entry_id the gateway publishes itself."""
    if isinstance(found, Principal):
        if caller is not None:
            caller.key_id, caller.tenant, caller.principal = found.key_id, found.tenant, found
        if session_key is None:
            return Admitted(found)
        try:
            if publish is not None:
                return Admitted(found, entry_id=await app[LIMITER].publish_session(session_key, publish))
            return Admitted(found, await app[REDIS].lrange(session_key, -MAX_STORED_TURNS, -1))
        except RedisError as exc:
            raise sessions_unavailable() from exc
    charges = app[SETTLING].take() if SETTLING in app else []
    try:
        admission = await app[LIMITER].admit_along(found, targets, token_given, charges=charges,
                                                   session_key=session_key, publish=publish, tenant=tenant)
    except SessionReadFailed as exc:
        raise sessions_unavailable() from exc
    except RedisError as exc:
        if charges:  # they went with the admission: lost, never retried (a retry could charge twice)
            log.warning("key usage not charged: Redis failed", charges=len(charges), error=repr(exc))
        raise Unavailable("The gateway cannot check API keys right now (Redis is unavailable); try again shortly.",
                          code="keys_unavailable") from exc
    result = admission.verdict
    if isinstance(result, Refused):
        app[METRICS].refused.labels(result.reason).inc()
        if caller is not None and result.principal is not None:
            caller.key_id, caller.tenant = result.principal.key_id, result.principal.tenant
        raise result.error
    if caller is not None:
        caller.key_id, caller.tenant, caller.principal = result.key_id, result.tenant, result
    return Admitted(result, admission.session_turns, admission.entry_id)


@dataclass(frozen=True)
class PendingAdmission:
    """An admission left to the round trip that publishes the request (admit_call with `publish`)."""

    found: Principal | KeyLookup
    targets: tuple[str, ...]
    token_given: bool
    caller: Named
    session_key: str | None
    record_tenant: str  # a virtual key's record's tenant the request was encoded for ("" for the rest)
    tenant: str  # the tenant the request goes by (the record's, X-Tenant-ID appended; a Principal's own)

    async def publishing(self, app: web.Application, publish: Publication) -> Admitted:
        return await admit_call(app, self.found, self.targets, self.token_given, self.caller, self.session_key,
                                publish, self.record_tenant)

    async def authenticate(self, app: web.Application) -> None:
        """For a request refused before its publication: a token that is no key is a 401 first (ApiError)."""
        await admit_call(app, self.found, None, self.token_given, self.caller)


def pending_admission(app: web.Application, found: Principal | KeyLookup, targets: tuple[str, ...],
                      token_given: bool, caller: Named, session_key: str | None) -> PendingAdmission | None:
    """The admission to leave to the request's publication; None when there is nothing to leave (a static
    key or an anonymous caller without a session: no round trip at all), or the tenant is not known before
    the admission (a virtual key this gateway has not admitted yet, or a token only open mode asks about)."""
    if isinstance(found, Principal):
        if session_key is None:
            return None
        return PendingAdmission(found, targets, token_given, caller, session_key, "", found.tenant)
    record_tenant = app[LIMITER].tenant_of(found.key_id) if found.virtual else None
    if record_tenant is None:
        return None
    return PendingAdmission(found, targets, token_given, caller, session_key, record_tenant,
                            found.tenant_of_key(record_tenant))


def sessions_unavailable() -> Unavailable:
    return Unavailable("Sessions cannot be read right now (Redis is unavailable); try again shortly.",
                       code="sessions_unavailable")


async def authenticate(request: web.Request) -> Principal:
    """Who calls an endpoint of the API other than chat completions (models, feedback, ...): any
    client key, static or virtual (looked up: one round trip), nothing checked against its limits,
    nothing charged; the 401 otherwise."""
    found = identify_request(request.app, request.headers)
    return await admit(request.app, found, None, bool(bearer_token(request.headers)))


def charge(account: Account | None) -> tuple[int, float]:
    """What an answer costs a key: every upstream call's tokens (tpm) and their priced cost (budgets)."""
    if account is None:
        return 0, 0.0
    tokens = sum(call.prompt_tokens + call.completion_tokens for call in account.calls)
    cost = account.cost_usd if account.cost_usd is not None else sum(call.cost_usd or 0.0 for call in account.calls)
    return tokens, max(0.0, cost)


async def settle(app: web.Application, principal: Principal | None, outcome: Outcome) -> None:
    """After the answer: charge a virtual key's tpm and spend (nothing for other callers, or for an
    answer that used nothing), in the background (Settlements). Redis failing loses this charge
    (logged), never the answer."""
    if principal is None or not principal.virtual:
        return
    tokens, cost = charge(outcome.account)
    if not (tokens and principal.limits.tpm) and cost <= 0:
        return
    await app[SETTLING].add(Charge(principal, tokens, cost))
