"""A circuit breaker for one upstream deployment. Pure: no I/O, the clock is injected.

closed ──(`failures` failures within `window_s`)──▶ open ──(`cooldown_s` later)──▶ half-open
half-open ──(its one probe succeeds)──▶ closed (the failure count starts again from zero)
half-open ──(its one probe fails)──▶ open (a fresh cooldown)

Open, the deployment gets no calls; half-open, it gets exactly one (the probe) at a time, and the
other calls go elsewhere until the probe has answered. Failures are counted in a sliding window
(successes do not wipe them), so a deployment that fails now and then never opens, and one that
fails in a burst opens at once.

How a caller uses it (services/router/upstreams/deployment.py does this for every call):

    if breaker.available():             # may a call go there now? (no side effects)
        ticket = breaker.begin()        # the call is sent; in half-open it is the probe
        ...
        breaker.success(ticket)         # or breaker.failure(ticket), or breaker.abandon(ticket)

`abandon` ends a call that says nothing about the deployment's health (the client left, a hedge lost):
it frees the probe slot and counts nothing. A verdict on a call begun before the last state change is
ignored: a slow call started while closed that succeeds after the breaker opened must not close it
again without a probe, nor may its failure extend a cooldown that already started.

`state` moves from open to half-open by itself when the cooldown is over (it is computed when read),
so a metric or /status reads it as it is at that moment.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

Clock = Callable[[], float]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 5  # this many failures within window_s open the breaker
    window_s: float = 30.0
    cooldown_s: float = 30.0  # open this long, then one probe is let through

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window_s <= 0 or self.cooldown_s < 0:
            raise ValueError(f"breaker policy needs failures >= 1, window_s > 0, cooldown_s >= 0: {self}")


@dataclass(frozen=True)
class Ticket:
    """One call's admission: which breaker generation it began in and whether it is the probe."""

    generation: int
    probe: bool


class Breaker:
    """Closed, open or half-open, per deployment and per router process."""

    def __init__(self, policy: BreakerPolicy | None = None, clock: Clock = time.monotonic) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._generation = 0  # bumped on every transition; stale verdicts are ignored
        self._failures: deque[float] = deque()  # when recent failures happened (closed only)
        self._opened_at = 0.0
        self._probing = False
        self.opened_total = 0  # how many times it opened (for a counter metric)

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.policy.cooldown_s:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def reopens_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 unless open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.policy.cooldown_s - self._clock())

    def recent_failures(self) -> int:
        """Failures counted towards opening (within the window, closed state)."""
        self._forget_old()
        return len(self._failures)

    def available(self) -> bool:
        """Would a call be let through now? Half-open: only while no probe is out."""
        if self._state is BreakerState.CLOSED:
            return True
        state = self.state
        return state is BreakerState.HALF_OPEN and not self._probing

    def begin(self) -> Ticket:
        """A call is sent. Half-open, it becomes the probe; call only when available() said so."""
        probe = self.state is BreakerState.HALF_OPEN
        if probe:
            self._probing = True
        return Ticket(self._generation, probe)

    def success(self, ticket: Ticket) -> None:
        if not self._current(ticket):
            return
        if ticket.probe:
            self._move(BreakerState.CLOSED)

    def failure(self, ticket: Ticket) -> None:
        if not self._current(ticket):
            return
        if ticket.probe:
            self._open()
            return
        self._failures.append(self._clock())
        self._forget_old()
        if len(self._failures) >= self.policy.failures:
            self._open()

    def abandon(self, ticket: Ticket) -> None:
        if self._current(ticket) and ticket.probe:
            self._probing = False

    def _current(self, ticket: Ticket) -> bool:
        self.state  # noqa: B018 -- lets an elapsed cooldown move open to half-open first
        return ticket.generation == self._generation

    def _open(self) -> None:
        self._opened_at = self._clock()
        self.opened_total += 1
        self._move(BreakerState.OPEN)

    def _move(self, state: BreakerState) -> None:
        self._state = state
        self._generation += 1
        self._probing = False
        self._failures.clear()

    def _forget_old(self) -> None:
        horizon = self._clock() - self.policy.window_s
        while self._failures and self._failures[0] <= horizon:
            self._failures.popleft()
