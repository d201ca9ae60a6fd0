"""The cluster queue: at most `<tier>.cluster_max_concurrent` calls in flight on a tier across every
router, through Redis, with a bounded wait (`<tier>.queue_timeout_s`, and never past the request's
deadline) for a free slot.

A slot is a lease: a member of the tier's sorted set (shared/keys.queue_slots) whose score is when
it expires, on Redis's clock (one clock for every router). A router refreshes the leases it holds
every bus.router_heartbeat_s and each lease lasts bus.router_alive_s, so a router that dies (or stops
refreshing) gives its slots back within router_alive_s: expired leases are removed by the next
acquisition, never counted. A call waiting for a slot is a member of the tier's waiting set the same
way (the queued count GET /queue/status shows), refreshed while it waits.

Waiting is polling (a jittered backoff from POLL_MIN_S to POLL_MAX_S) rather than a notification: a
slot freed is taken by whichever waiter asks next, in no particular order (no FIFO). A tier without
cluster_max_concurrent costs nothing: no Redis call is made for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from services.router.upstreams.errors import UpstreamError
from services.router.upstreams.pool import REQUEST_DEADLINE
from shared.aio import being_cancelled
from shared.config import Config
from shared.keys import queue_slots, queue_waiting

log = structlog.get_logger(__name__)

POLL_MIN_S = 0.01
POLL_MAX_S = 0.1

# KEYS[1] the tier's slots, KEYS[2] its waiting set (member -> expiry in ms, Redis's clock).
# ARGV[1] limit, ARGV[2] the lease's id, ARGV[3] lease length in ms, ARGV[4] "1": count as waiting if full.
# Returns 1 when the slot is taken (and the id leaves the waiting set), else 0.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], lease)
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
if ARGV[4] == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZADD', KEYS[2], now + lease, ARGV[2])
  redis.call('PEXPIRE', KEYS[2], lease)
end
return 0
"""

# KEYS[1] slots, KEYS[2] waiting; ARGV[1] lease length in ms, ARGV[2] how many of the ids are slots;
# ARGV[3...] the ids: the slots first, then the waiters. Pushes back the expiry of those still there
# (XX: a lease that already expired is not brought back). Returns how many slots were still held.
REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local slots = tonumber(ARGV[2])
local held = 0
for i = 3, #ARGV do
  local key = KEYS[2]
  if i < 3 + slots then key = KEYS[1] end
  local changed = redis.call('ZADD', key, 'XX', 'CH', now + lease, ARGV[i])
  if key == KEYS[1] then held = held + changed end
  redis.call('PEXPIRE', key, lease)
end
return held
"""


class TierFull(UpstreamError):
    """No slot of the tier's cluster queue came free within its queue_timeout_s (or, not waiting, at once)."""

    def __init__(self, tier: str, waited_s: float) -> None:
        super().__init__(f"the tier is full (no free slot in {waited_s:.3g} s)", tier=tier, status=503,
                         retry_after_s=max(waited_s, 1.0))


@dataclass(frozen=True)
class Bound:
    limit: int
    timeout_s: float


@dataclass(frozen=True, eq=False)
class Lease:
    tier: str
    id: str


@dataclass
class ClusterQueue:
    """One router's side of the tiers' cluster queues: acquire, release, and the leases it keeps alive."""

    redis: Redis
    bounds: Mapping[str, Bound]  # the bounded tiers only
    owner: str  # this router (its consumer name): lease ids start with it
    lease_s: float = 10.0
    held: dict[str, set[str]] = field(default_factory=dict)
    waiting: dict[str, set[str]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _acquire: AsyncScript = field(init=False)
    _refresh: AsyncScript = field(init=False)

    def __post_init__(self) -> None:
        self._acquire = self.redis.register_script(ACQUIRE)
        self._refresh = self.redis.register_script(REFRESH)

    def bounded(self, tier: str) -> bool:
        return tier in self.bounds

    async def acquire(self, tier: str, wait: bool = True) -> Lease | None:
        """A slot of `tier`, waiting up to its queue_timeout_s when `wait`; None for an unbounded tier.
        Raises TierFull when none came free in time."""
        bound = self.bounds.get(tier)
        if bound is None:
            return None
        lease = Lease(tier, f"{self.owner}:{next(self._ids)}")
        started = time.monotonic()
        deadline = started + (bound.timeout_s if wait else 0.0)
        request_deadline = REQUEST_DEADLINE.get()  # wall clock; the wait never outlasts the request
        if request_deadline:
            deadline = min(deadline, started + max(request_deadline - time.time(), 0.0))
        delay = POLL_MIN_S
        queued = False
        try:
            while True:
                taken = await self._acquire(keys=[queue_slots(tier), queue_waiting(tier)],
                                            args=[bound.limit, lease.id, self._lease_ms, 1 if wait else 0])
                if taken:
                    self.held.setdefault(tier, set()).add(lease.id)
                    return lease
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TierFull(tier, time.monotonic() - started)
                if not queued:
                    queued = True
                    self.waiting.setdefault(tier, set()).add(lease.id)
                await asyncio.sleep(min(delay * random.uniform(0.5, 1.0), left))
                delay = min(delay * 2, POLL_MAX_S)
        finally:
            if queued:
                self.waiting[tier].discard(lease.id)
                if lease.id not in self.held.get(tier, ()):
                    await self._forget(queue_waiting(tier), lease.id)

    async def release(self, lease: Lease | None) -> None:
        """Give the slot back (a Redis error leaves it to expire)."""
        if lease is None:
            return
        self.held.get(lease.tier, set()).discard(lease.id)
        await self._forget(queue_slots(lease.tier), lease.id)

    async def refresh(self) -> None:
        """Push back the expiry of every lease and wait this router holds (each tier one round trip)."""
        for tier in self.bounds:
            slots, waiters = list(self.held.get(tier, ())), list(self.waiting.get(tier, ()))
            if not slots and not waiters:
                continue
            kept = await self._refresh(keys=[queue_slots(tier), queue_waiting(tier)],
                                       args=[self._lease_ms, len(slots), *slots, *waiters])
            if int(kept) < len(slots):
                log.warning("cluster queue leases expired while held (the router stalled longer than "
                            "bus.router_alive_s)", tier=tier, lost=len(slots) - int(kept))

    async def _forget(self, key: str, member: str) -> None:
        with contextlib.suppress(RedisError):
            await self.redis.zrem(key, member)

    @property
    def _lease_ms(self) -> int:
        return max(1, int(self.lease_s * 1000))


def cluster_bounds(config: Config) -> dict[str, Bound]:
    """The tiers with a cluster_max_concurrent, and their bounds."""
    tiers = {"drafter": config.drafter, "heavyweight": config.heavyweight}
    return {name: Bound(tier.cluster_max_concurrent, tier.queue_timeout_s) for name, tier in tiers.items()
            if tier.cluster_max_concurrent is not None}


async def keep_leases(queue: ClusterQueue, every_s: float) -> None:
    """The router's leases and waits refreshed every `every_s` for as long as it runs (a Redis error
    is logged and the next turn tries again: the leases outlast a few missed turns)."""
    while not being_cancelled():  # redis-py may absorb the cancel that lands mid-command (shared/aio.py)
        await asyncio.sleep(every_s)
        try:
            await queue.refresh()
        except RedisError as exc:
            log.warning("could not refresh the cluster queue's leases", error=str(exc))
