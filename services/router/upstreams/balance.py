"""Which deployment of a tier takes the next call. Pure: reads deployment.py's state, no I/O.

A `Balancer` holds a tier's deployments (in config order) and one strategy:
- `round_robin`: each in turn;
- `weighted`: smooth weighted round robin (nginx's): with weights 5, 1, 1 the order is
  a a b a c a a, shares exact over every cycle and never a burst of one deployment longer than its
  weight requires;
- `least_busy`: fewest calls in flight from this router, ties by config order;
- `latency`: lowest EWMA of time to first token plus `error_penalty_s` per error of the last
  `error_window_s` (deployment.py); a deployment this router has not measured yet scores 0 so that it
  is tried (and measured) first;
- `cost`: cheapest by `shared/pricing.Price` at a typical 3 input : 1 output token mix (the blended
  USD per million tokens, 0.75 x input + 0.25 x output), ties by fewest in flight then config order;
  unpriced deployments come after every priced one.

Every strategy chooses only among the deployments that can take a call now: breaker closed (or
half-open with no probe out), fewer than max_concurrent in flight, not refused by the rate limit,
not excluded by the caller. When none can, `choose` says why:
- `RateLimited(retry_after_s)`: no deployment is free and at least one is only waiting for its rate
  limit, the soonest in `retry_after_s`: the client gets 429 with Retry-After;
- `NoneAvailable(reasons)`: every deployment is broken, busy or excluded: 503 (its
  `retry_after_s` says when the first open breaker will let a probe through, if any is open).

State (round robin's position, the weighted currents, and everything in deployment.py) is per router
process: two routers each go round their own robin.

How a caller uses it:

    balancer = Balancer(deployments, strategy("least_busy"))
    choice = balancer.choose(exclude={"tried-already"})
    match choice:
        case Picked(deployment): with deployment.start() as call: ...
        case RateLimited(retry_after_s): ...   # 429
        case NoneAvailable(): ...              # 503

ratelimit.admit() wraps this with the cluster-wide rate-limit check.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from services.router.upstreams.deployment import Deployment, Unavailable

Candidates = Sequence[tuple[int, Deployment]]  # (position in the tier, deployment), in config order

ERROR_PENALTY_S = 1.0  # the latency strategy's cost of one recent error, in seconds of TTFT
INPUT_SHARE = 0.75  # the cost strategy's token mix: 3 input tokens per output token


class Strategy(Protocol):
    def pick(self, candidates: Candidates) -> Deployment:
        """One of `candidates` (never empty)."""
        ...


@dataclass
class RoundRobin:
    _next: int = 0  # the position to start looking from

    def pick(self, candidates: Candidates) -> Deployment:
        position, chosen = next(((p, d) for p, d in candidates if p >= self._next), candidates[0])
        self._next = position + 1
        return chosen


@dataclass
class Weighted:
    """Smooth weighted round robin: every candidate gains its weight, the richest is chosen and pays
    the round's total. Deployments that cannot take calls sit the round out, keeping their balance."""

    _current: dict[str, float] = field(default_factory=dict)

    def pick(self, candidates: Candidates) -> Deployment:
        total = 0.0
        best: Deployment | None = None
        for _, deployment in candidates:
            self._current[deployment.name] = self._current.get(deployment.name, 0.0) + deployment.weight
            total += deployment.weight
            if best is None or self._current[deployment.name] > self._current[best.name]:
                best = deployment
        assert best is not None
        self._current[best.name] -= total
        return best


@dataclass
class LeastBusy:
    def pick(self, candidates: Candidates) -> Deployment:
        return min(candidates, key=lambda pair: (pair[1].in_flight, pair[0]))[1]


@dataclass
class Latency:
    error_penalty_s: float = ERROR_PENALTY_S

    def score(self, deployment: Deployment) -> float:
        return (deployment.ewma_ttft_s or 0.0) + self.error_penalty_s * deployment.recent_errors()

    def pick(self, candidates: Candidates) -> Deployment:
        return min(candidates, key=lambda pair: (self.score(pair[1]), pair[0]))[1]


@dataclass
class Cost:
    input_share: float = INPUT_SHARE

    def blended_usd_per_mtok(self, deployment: Deployment) -> float:
        """USD per million tokens at the strategy's mix; infinite when unpriced (chosen last)."""
        price = deployment.price
        if price is None:
            return math.inf
        return self.input_share * price.input_usd_per_mtok + (1 - self.input_share) * price.output_usd_per_mtok

    def pick(self, candidates: Candidates) -> Deployment:
        return min(candidates, key=lambda pair: (self.blended_usd_per_mtok(pair[1]), pair[1].in_flight, pair[0]))[1]


STRATEGIES: dict[str, type[Strategy]] = {
    "round_robin": RoundRobin,
    "weighted": Weighted,
    "least_busy": LeastBusy,
    "latency": Latency,
    "cost": Cost,
}


def strategy(name: str, **options: float) -> Strategy:
    """A fresh strategy by its config name (options: latency's error_penalty_s, cost's input_share)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown balancing strategy {name!r} (one of {', '.join(STRATEGIES)})")
    return STRATEGIES[name](**options)


@dataclass(frozen=True)
class Picked:
    deployment: Deployment


@dataclass(frozen=True)
class RateLimited:
    """Nothing free, and at least one deployment waits only for its rate limit: 429."""

    retry_after_s: float
    reasons: dict[str, Unavailable]


@dataclass(frozen=True)
class NoneAvailable:
    """Every deployment is broken, busy or excluded: 503."""

    reasons: dict[str, Unavailable]
    retry_after_s: float | None = None  # when the first open breaker lets a probe through, if any


Choice = Picked | RateLimited | NoneAvailable


class Balancer:
    """One tier's deployments and its strategy, in one router process."""

    def __init__(self, deployments: Sequence[Deployment], chooser: Strategy) -> None:
        if not deployments:
            raise ValueError("a tier needs at least one deployment")
        names = [deployment.name for deployment in deployments]
        if len(set(names)) != len(names):
            raise ValueError(f"deployment names must be unique within a tier: {names}")
        self.deployments = list(deployments)
        self.strategy = chooser

    def choose(self, exclude: Collection[str] = ()) -> Choice:
        """The deployment for the next call, or why there is none; `exclude`: names already tried."""
        candidates = [
            (position, deployment)
            for position, deployment in enumerate(self.deployments)
            if deployment.name not in exclude and deployment.unavailable() is None
        ]
        if candidates:
            return Picked(self.strategy.pick(candidates))
        return self._refusal(exclude)

    def _refusal(self, exclude: Collection[str]) -> Choice:
        """Why nothing can be chosen (asked again only on this path, to keep choosing cheap)."""
        by_name = {deployment.name: deployment for deployment in self.deployments}
        reasons: dict[str, Unavailable] = {}
        for name, deployment in by_name.items():
            why = Unavailable.EXCLUDED if name in exclude else deployment.unavailable()
            if why is None:  # its rate limit or cooldown ran out a moment ago
                return Picked(deployment)
            reasons[name] = why
        waits = [by_name[name].rate_limited_for() for name, why in reasons.items() if why is Unavailable.RATE_LIMITED]
        if waits:
            return RateLimited(min(waits), reasons)
        # Half-open with its probe out has no known end: only open breakers' cooldowns say when.
        broken = [by_name[name] for name, why in reasons.items() if why is Unavailable.BREAKER_OPEN]
        known = [seconds for seconds in (deployment.breaker.reopens_in() for deployment in broken) if seconds > 0]
        return NoneAvailable(reasons, min(known) if known else None)
