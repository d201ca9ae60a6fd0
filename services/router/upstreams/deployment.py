"""What one router process knows about one upstream deployment. Pure: no I/O, the clock is injected.

A tier is a list of deployments. Each router keeps, per deployment, the calls it has in flight, an
EWMA of the time to first token of its own calls and a sample of the last ones (for
`hedge_after: p95`, hedge.py), its recent errors, a circuit breaker
(breaker.py) and, when Redis has refused a call for the deployment's rpm / tpm, until when that
refusal holds. None of this is shared between routers (only the rate limits are, in Redis:
ratelimit.py); with several routers each one balances and trips breakers on what it has seen.

How a caller uses it: balance.py picks a deployment, then every call goes through a `Call`:

    with deployment.start() as call:        # counted in flight; the breaker's probe if half-open
        ...                                 # send the request
        call.first_token()                  # the first token arrived: feeds the TTFT average
        ...
        call.succeeded()                    # or call.failed(), call.throttled(retry_after_s)

A call ends once; later verdicts are ignored, and leaving the `with` block without one counts as
abandoned (no verdict for the breaker): a client that left, a hedge that lost, a rate-limit refusal
before anything was sent. Which outcome is which is the caller's to say:
- `succeeded()`: the deployment answered as a working deployment does, including a 4xx about the
  request itself (400, 404 for an unknown parameter, 413): that is the request's fault, not its.
- `failed()`: the deployment's fault: connect error, timeout, 5xx, a broken stream, 401/403 (a
  deployment whose key is refused is as unusable as one that is down). Counts towards the breaker
  and the latency strategy's error penalty.
- `throttled(retry_after_s)`: the upstream itself said 429. Not a breaker failure: the deployment is
  skipped by this router for `retry_after_s` (the upstream's Retry-After, or a short default).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType

from services.router.upstreams.breaker import Breaker, BreakerPolicy, Clock, Ticket
from services.router.upstreams.hedge import TtftSample
from shared.pricing import Price

EWMA_ALPHA = 0.3  # weight of the newest TTFT: about the last 5 calls matter
ERROR_WINDOW_S = 60.0  # errors this recent count against the latency strategy


class Unavailable(StrEnum):
    """Why a deployment cannot take a call right now."""

    BREAKER_OPEN = "breaker_open"  # open, or half-open with its probe out
    BUSY = "busy"  # max_concurrent calls in flight from this router
    RATE_LIMITED = "rate_limited"  # Redis (or the upstream) refused it until some time
    EXCLUDED = "excluded"  # the caller ruled it out (already tried for this request)


@dataclass(frozen=True)
class Limits:
    """Per-minute limits, enforced across all routers (ratelimit.py); None: no limit."""

    rpm: int | None = None
    tpm: int | None = None


@dataclass(eq=False)  # one object per deployment and router: compared and hashed by identity
class Deployment:
    name: str
    weight: float = 1.0  # the weighted strategy's share
    max_concurrent: int | None = None  # per router process; None: unbounded
    limits: Limits = field(default_factory=Limits)
    price: Price | None = None  # the cost strategy's key; None: unpriced (chosen last)
    clock: Clock = time.monotonic
    breaker_policy: BreakerPolicy | None = None
    ewma_alpha: float = EWMA_ALPHA
    error_window_s: float = ERROR_WINDOW_S
    in_flight: int = 0
    ewma_ttft_s: float | None = None  # None until a call of this router got a first token
    ttft: TtftSample = field(default_factory=TtftSample)  # the recent first-token delays (hedge.py)
    breaker: Breaker = field(init=False)
    _limited_until: float = field(default=0.0, init=False)
    _errors: deque[float] = field(default_factory=deque, init=False)

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"deployment {self.name}: weight must be > 0, not {self.weight}")
        if not 0 < self.ewma_alpha <= 1:
            raise ValueError(f"deployment {self.name}: ewma_alpha must be in (0, 1], not {self.ewma_alpha}")
        self.breaker = Breaker(self.breaker_policy, self.clock)

    def unavailable(self) -> Unavailable | None:
        """Why no call may go here now, or None when one may."""
        if not self.breaker.available():
            return Unavailable.BREAKER_OPEN
        if self.max_concurrent is not None and self.in_flight >= self.max_concurrent:
            return Unavailable.BUSY
        if self.rate_limited_for() > 0:
            return Unavailable.RATE_LIMITED
        return None

    def rate_limited_for(self) -> float:
        """Seconds this router still skips the deployment for its rate limit (0: not limited)."""
        if not self._limited_until:
            return 0.0
        return max(0.0, self._limited_until - self.clock())

    def rate_limited(self, retry_after_s: float) -> None:
        """Redis (or the upstream) refused a call: skip the deployment this long without asking again."""
        self._limited_until = max(self._limited_until, self.clock() + retry_after_s)

    def recent_errors(self) -> int:
        horizon = self.clock() - self.error_window_s
        while self._errors and self._errors[0] <= horizon:
            self._errors.popleft()
        return len(self._errors)

    def start(self) -> Call:
        """A call is about to be sent here (check unavailable() first; balance.py does)."""
        self.in_flight += 1
        return Call(self, self.breaker.begin(), self.clock())

    def status(self) -> dict[str, object]:
        """What GET /status shows for this deployment (this router's view)."""
        return {
            "name": self.name,
            "breaker": str(self.breaker.state),
            "in_flight": self.in_flight,
            "ewma_ttft_ms": None if self.ewma_ttft_s is None else round(self.ewma_ttft_s * 1000, 1),
            "recent_errors": self.recent_errors(),
            "rate_limited_for_s": round(self.rate_limited_for(), 3),
        }

    def _observe_ttft(self, ttft_s: float) -> None:
        self.ttft.add(ttft_s)
        previous = self.ewma_ttft_s
        self.ewma_ttft_s = ttft_s if previous is None else self.ewma_alpha * ttft_s + (1 - self.ewma_alpha) * previous

    def _error(self) -> None:
        self._errors.append(self.clock())


class Call:
    """One call to a deployment, from send to its one verdict. Ends once; see the module docstring."""

    def __init__(self, deployment: Deployment, ticket: Ticket, started: float) -> None:
        self.deployment = deployment
        self.started = started
        self.ttft_s: float | None = None
        self.outcome: str | None = None  # succeeded | failed | throttled | abandoned, once ended
        self._ticket = ticket

    def first_token(self) -> None:
        """The first token came: its delay feeds the deployment's TTFT average (once per call)."""
        if self.ttft_s is None and self.outcome is None:
            self.ttft_s = self.deployment.clock() - self.started
            self.deployment._observe_ttft(self.ttft_s)

    def outrun(self) -> None:
        """A hedge produced its first token before this call did, which is cancelled: its delay is at
        least the time it ran, a lower bound the TTFT sample keeps (hedge.py says why); the average
        is left to measured delays."""
        if self.ttft_s is None and self.outcome is None:
            self.deployment.ttft.add(self.deployment.clock() - self.started)

    def succeeded(self) -> None:
        if self._end("succeeded"):
            self.deployment.breaker.success(self._ticket)

    def failed(self) -> None:
        if self._end("failed"):
            self.deployment._error()
            self.deployment.breaker.failure(self._ticket)

    def throttled(self, retry_after_s: float) -> None:
        if self._end("throttled"):
            self.deployment.breaker.abandon(self._ticket)
            self.deployment.rate_limited(retry_after_s)

    def abandoned(self) -> None:
        if self._end("abandoned"):
            self.deployment.breaker.abandon(self._ticket)

    def __enter__(self) -> Call:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.abandoned()

    def _end(self, outcome: str) -> bool:
        if self.outcome is not None:
            return False
        self.outcome = outcome
        self.deployment.in_flight -= 1
        return True
