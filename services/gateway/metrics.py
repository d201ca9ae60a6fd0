"""The gateway's Prometheus metrics."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class GatewayMetrics:
    requests: Counter
    latency: Histogram
    cache_lookups: Counter
    in_flight: Gauge
    client_disconnects: Counter
    bus_failures: Counter
    ledger_records: Counter
    session_turns: Counter
    refused: Counter  # requests refused at admission, by reason (services/gateway/limits.py)


def create_metrics(registry: CollectorRegistry) -> GatewayMetrics:
    return GatewayMetrics(
        requests=Counter("draftgate_requests_total", "Chat completion requests by outcome",
                         ["decision", "status"], registry=registry),
        latency=Histogram("draftgate_request_duration_seconds",
                          "Time until the answer (streams: until its headers) by decision", ["decision"],
                          buckets=LATENCY_BUCKETS, registry=registry),
        cache_lookups=Counter("draftgate_gateway_cache_lookups_total",
                              "Gateway cache lookups by result (hit tier, miss, error)", ["result"], registry=registry),
        in_flight=Gauge("draftgate_gateway_in_flight", "Requests being answered", registry=registry),
        client_disconnects=Counter("draftgate_client_disconnects_total", "Clients that left before the answer",
                                   registry=registry),
        bus_failures=Counter("draftgate_gateway_bus_failures_total",
                             "Requests the gateway ended itself because Redis lost them (bus_restarted), was "
                             "unreachable (bus_unavailable) or lost some of their replies (reply_lost)", ["reason"],
                             registry=registry),
        ledger_records=Counter("draftgate_ledger_records_total",
                               "Ledger records this gateway put on the ledger stream (emitted) or lost: beyond its "
                               "buffer while Redis was unreachable, or unwritten at shutdown (dropped)", ["result"],
                               registry=registry),
        session_turns=Counter("draftgate_session_turns_total",
                              "Session turns saved for the next request (saved), or lost because Redis failed "
                              "(failed: the answer still went out)", ["result"], registry=registry),
        refused=Counter("draftgate_gateway_refused_total",
                        "API requests refused at admission: auth (no, an unknown, revoked or expired key), "
                        "forbidden (a model the key may not use), rate_limit (its rpm or tpm), budget (spent)",
                        ["reason"], registry=registry),
    )
