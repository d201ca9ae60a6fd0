"""The router's Prometheus metrics, registered on the app's own registry."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.router.upstreams.breaker import BreakerState
from services.router.upstreams.pool import Observer, Pool

ENTROPY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
TOKEN_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000)
SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class RouterMetrics:
    decisions: Counter
    draft_entropy: Histogram
    escalation_reasons: Counter
    upstream_errors: Counter
    upstream_tokens: Counter
    in_flight: Gauge
    reclaimed: Counter
    cancelled_before_start: Counter
    bus_errors: Counter
    reply_overflows: Counter
    speculations_started: Counter
    speculations_cancelled: Counter
    speculations_used: Counter
    speculations_skipped: Counter
    speculations_active: Gauge
    speculation_saved: Histogram
    speculation_wasted_tokens: Counter
    seam_tokens: Histogram
    cost: Counter
    cost_baseline: Counter
    cost_saved: Gauge
    upstream_calls: Counter
    upstream_retries: Counter
    upstream_fallbacks: Counter
    upstream_hedges: Counter
    upstream_hedge_wasted_tokens: Counter
    degraded: Counter
    degraded_rejected: Counter
    deployment_cost: Counter
    session_turns: Counter


def create_metrics(registry: CollectorRegistry) -> RouterMetrics:
    return RouterMetrics(
        decisions=Counter("draftgate_router_decisions_total", "Answers by routing decision and tier",
                          ["decision", "tier"], registry=registry),
        draft_entropy=Histogram("draftgate_draft_entropy_bits", "Decision metric (largest window mean) per draft",
                                buckets=ENTROPY_BUCKETS, registry=registry),
        escalation_reasons=Counter("draftgate_escalations_total", "Escalations by reason",
                                   ["reason"], registry=registry),
        upstream_errors=Counter("draftgate_upstream_errors_total", "Failed upstream calls", ["tier"],
                                registry=registry),
        upstream_tokens=Counter("draftgate_upstream_completion_tokens_total",
                                "Completion tokens received from each tier", ["tier"], registry=registry),
        in_flight=Gauge("draftgate_router_in_flight", "Requests this router is working on", registry=registry),
        reclaimed=Counter("draftgate_router_reclaimed_total", "Requests taken over from a dead router",
                          registry=registry),
        cancelled_before_start=Counter("draftgate_router_cancelled_before_start_total",
                                       "Requests dropped at pick-up because their client had already left",
                                       registry=registry),
        bus_errors=Counter("draftgate_router_bus_errors_total",
                           "Answers that could not be written to Redis even after retries (left pending)",
                           registry=registry),
        reply_overflows=Counter("draftgate_router_reply_overflows_total",
                                "Answers stopped because their gateway had too many unread replies",
                                registry=registry),
        speculations_started=Counter("draftgate_speculations_started_total", "Heavyweight calls started early",
                                     registry=registry),
        speculations_cancelled=Counter("draftgate_speculations_cancelled_total",
                                       "Speculations cancelled because the draft was accepted", registry=registry),
        speculations_used=Counter("draftgate_speculations_used_total",
                                  "Speculations that served an escalated answer", registry=registry),
        speculations_skipped=Counter("draftgate_speculations_skipped_total",
                                     "Speculations not started because the concurrency bound was reached",
                                     registry=registry),
        speculations_active=Gauge("draftgate_speculations_active",
                                  "Speculation budget in use: heavyweight calls started early and not yet ended",
                                  registry=registry),
        speculation_saved=Histogram("draftgate_speculation_latency_saved_seconds",
                                    "Head start a used speculation had over a serial escalation",
                                    buckets=SECONDS_BUCKETS, registry=registry),
        speculation_wasted_tokens=Counter("draftgate_speculation_wasted_tokens_total",
                                          "Heavyweight tokens consumed by cancelled speculations", registry=registry),
        seam_tokens=Histogram("draftgate_router_seam_tokens",
                              "Drafter tokens the client had been shown when the heavyweight took over (continued "
                              "answers of progressive streams)", buckets=TOKEN_BUCKETS, registry=registry),
        cost=Counter("draftgate_cost_usd", "USD spent on each tier at its configured price (aborted drafts and "
                     "cancelled speculations included)", ["tier"], registry=registry),
        cost_baseline=Counter("draftgate_cost_baseline_usd", "USD the same answers would have cost from the "
                              "heavyweight alone", registry=registry),
        # A running sum, not a counter: an escalation that paid for its draft too saves less than nothing.
        # For rates use increase(baseline) - increase(cost), which survive restarts.
        cost_saved=Gauge("draftgate_cost_saved_usd_total", "USD saved against sending every answered request to "
                         "the heavyweight alone, since this router started", registry=registry),
        upstream_calls=Counter("draftgate_upstream_calls_total", "Upstream calls by tier, deployment and how they "
                               "ended (succeeded, failed, failed_mid_stream, throttled, rejected: the request's "
                               "own 4xx, abandoned: the caller left before the first chunk)",
                               ["tier", "deployment", "outcome"], registry=registry),
        upstream_retries=Counter("draftgate_upstream_retries_total", "Calls tried again after a failure before "
                                 "their first chunk, by the deployment tried next", ["tier", "deployment"],
                                 registry=registry),
        upstream_fallbacks=Counter("draftgate_upstream_fallbacks_total", "Calls a tier's deployments could not "
                                   "take, passed on to one of its fallbacks", ["tier", "fallback"],
                                   registry=registry),
        upstream_hedges=Counter("draftgate_upstream_hedges_total", "Hedged calls: fired (a second deployment "
                                "started), won (the second answered first), lost (the first did; the second "
                                "was cancelled before its first chunk)", ["tier", "deployment", "outcome"],
                                registry=registry),
        upstream_hedge_wasted_tokens=Counter("draftgate_upstream_hedge_wasted_tokens_total", "Estimated prompt "
                                             "tokens of hedged calls cancelled because the other answered first "
                                             "(a provider may bill them)", ["tier", "deployment"],
                                             registry=registry),
        degraded=Counter("draftgate_degraded", "Escalated answers the drafter served because the tier was full "
                         "(routing.degraded_mode: serve_draft), by the full tier and why: queue_timeout (no slot "
                         "of its cluster queue in time), unavailable (every deployment's breaker open or busy), "
                         "rate_limited", ["tier", "reason"], registry=registry),
        degraded_rejected=Counter("draftgate_degraded_rejected", "Escalations refused because the tier was full "
                                  "and no draft could be served instead (degraded_mode: reject, or no usable "
                                  "draft)", ["tier", "reason"], registry=registry),
        deployment_cost=Counter("draftgate_deployment_cost_usd", "USD spent on each deployment at its own price, "
                                "by the tier the call was made for (priced calls only; deployment \"\" for a "
                                "speculation cancelled before its stream opened)", ["tier", "deployment"],
                                registry=registry),
        # The gateway counts the same for the answers it makes itself (from the cache): one name, summed.
        session_turns=Counter("draftgate_session_turns_total",
                              "Session turns saved for the next request (saved), or lost because Redis failed "
                              "(failed: the answer still went out)", ["result"], registry=registry),
    )


CALL_OUTCOMES = frozenset({"succeeded", "failed", "failed_mid_stream", "throttled", "rejected", "abandoned"})
HEDGE_OUTCOMES = {"hedged": "fired", "hedge_won": "won", "hedge_lost": "lost"}
BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def pool_observer(metrics: RouterMetrics) -> Observer:
    """The pools' observe hook (upstreams/pool.py) as counters: `deployment` is the fallback's name
    for "fallback", the deployment tried next for "retried"."""

    def observe(tier: str, deployment: str, outcome: str, amount: int = 1) -> None:
        if outcome == "hedge_wasted_tokens":
            metrics.upstream_hedge_wasted_tokens.labels(tier, deployment).inc(amount)
        elif outcome in CALL_OUTCOMES:
            metrics.upstream_calls.labels(tier, deployment, outcome).inc()
        elif outcome in HEDGE_OUTCOMES:
            metrics.upstream_hedges.labels(tier, deployment, HEDGE_OUTCOMES[outcome]).inc()
        elif outcome == "retried":
            metrics.upstream_retries.labels(tier, deployment).inc()
        elif outcome == "fallback":
            metrics.upstream_fallbacks.labels(tier, deployment).inc()

    return observe


class BreakerCollector(Collector):
    """draftgate_upstream_breaker_state per deployment, read from the pools when scraped: a breaker
    turns half-open by itself when its cooldown ends (no event to set a gauge on)."""

    def __init__(self, pools: Sequence[Pool]) -> None:
        self._pools = pools

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("draftgate_upstream_breaker_state", "Circuit breaker of each deployment, as "
                                   "this router sees it: 0 closed, 1 half-open, 2 open", labels=["tier", "deployment"])
        for tier, deployment, state in _breakers(self._pools):
            family.add_metric([tier, deployment], BREAKER_VALUES[state])
        yield family


def _breakers(pools: Iterable[Pool]) -> Iterator[tuple[str, str, BreakerState]]:
    for pool in pools:
        for member in pool.members:
            yield member.target.tier or pool.name, member.name, member.state.breaker.state
