"""tpm settlements sent to Redis together: many calls' corrections as one round trip per deployment.

Every call to a deployment with a `tpm` limit reserves an estimate before it is sent (ratelimit.py)
and, once it has ended, is settled to what it used: the difference goes back to (or, for an
overrun, is charged to) the deployment's bucket in Redis. One round trip per call, after the
answer, when done call by call; this module sums the corrections of one deployment and sends the
sum, which the bucket takes the same as the parts (a settlement only adds to what was charged).

A deployment's correction waits at most `window_s` (1 s), and not at all once it is as large as
`share` (1%) of its tpm: a refund that matters to the next call (a large max_tokens against a small
limit) is made at once, and what waits is never more than 1% of the bucket, for at most a second:
the bucket looks at most 1% fuller (or emptier) than it is. A router sends one settlement per
deployment a second, or one per 1% of its tpm, whichever comes first, however many calls it makes.

Corrections still waiting when the router stops are lost: at most 1% of a bucket per deployment,
which drains within the minute as anything charged does.

How a caller uses it (pool.py does, once per limiter):

    settlements = Settlements(limiter)
    settlements.add(deployment, actual - reserved)   # after the call; returns at once
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Protocol

from services.router.upstreams.deployment import Deployment

WINDOW_S = 1.0  # a small correction waits at most this long for others to join it
SHARE = 0.01  # a correction this large a share of the deployment's tpm is sent at once


class Limiter(Protocol):
    def settle(self, deployment: Deployment, reserved: int, actual: int) -> Awaitable[None]: ...


class Settlements:
    """The corrections not yet sent, per deployment, for one limiter (one router process)."""

    def __init__(self, limiter: Limiter, window_s: float = WINDOW_S, share: float = SHARE) -> None:
        self._limiter = limiter
        self._window_s = window_s
        self._share = share
        self._pending: dict[Deployment, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Future[None]] = set()  # held so none is collected unfinished

    def add(self, deployment: Deployment, tokens: int) -> None:
        """Charge `tokens` to the deployment's tpm bucket (negative: give them back), soon."""
        if not tokens or not deployment.limits.tpm:
            return
        total = self._pending.get(deployment, 0) + tokens
        if abs(total) >= deployment.limits.tpm * self._share:
            self._pending.pop(deployment, None)
            self._send(deployment, total)
            return
        self._pending[deployment] = total
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window_s, self.flush)

    def pending(self, deployment: Deployment) -> int:
        """Tokens charged (or, negative, given back) to the deployment but not yet sent."""
        return self._pending.get(deployment, 0)

    def flush(self) -> None:
        """Send every waiting correction now (each in the background)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        for deployment, tokens in pending.items():
            if tokens:
                self._send(deployment, tokens)

    async def drain(self) -> None:
        """Send what waits and wait until every correction sent is in Redis (tests, shutdown)."""
        self.flush()
        while self._sending:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._sending)

    def _send(self, deployment: Deployment, tokens: int) -> None:
        # settle() charges actual - reserved: the sum of the corrections, as one call's would be
        task = asyncio.ensure_future(self._limiter.settle(deployment, 0, tokens))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
