"""The router's Prometheus metrics, registered on the app's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
    )
