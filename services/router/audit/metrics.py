"""The audit's Prometheus metrics, on the router's registry.

The rates are cluster-wide (read from Redis by each router's refresh loop), so every router exports the
same values: aggregate them with max(), as deploy/prometheus/audit-rules.yml does.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.router.audit.store import Snapshot


@dataclass(frozen=True)
class AuditMetrics:
    audits: Counter
    sampled: Counter
    cost: Counter
    rate: Gauge
    window_verdicts: Gauge
    tenant_rate: Gauge
    category_rate: Gauge
    alert_rate: Gauge
    spent_today: Gauge

    def show(self, state: Snapshot, spent_usd: float) -> None:
        """Set the gauges to the cluster's state; tenants and categories no longer there are dropped."""
        self.rate.set(state.overall.rate)
        self.window_verdicts.set(state.overall.verdicts)
        self.spent_today.set(spent_usd)
        for gauge, rates in ((self.tenant_rate, state.tenants), (self.category_rate, state.categories)):
            gauge.clear()
            for name, rate in rates.items():
                gauge.labels(name).set(rate.rate)


def create_audit_metrics(registry: CollectorRegistry, alert_rate: float) -> AuditMetrics:
    metrics = AuditMetrics(
        audits=Counter("draftgate_audit_total", "Audits by verdict: agree, disagree, skipped_budget, skipped_busy, "
                       "error, undecided, skipped_empty (the gateway counts client feedback: client_good, client_bad)",
                       ["verdict"], registry=registry),
        sampled=Counter("draftgate_audit_sampled_total", "Accepted drafts this router put on the audit stream",
                        registry=registry),
        cost=Counter("draftgate_audit_cost_usd_total", "What this router's audits cost (heavyweight and judge calls)",
                     registry=registry),
        rate=Gauge("draftgate_audit_disagreement_rate",
                   "Share of disagreements among the cluster's last audit.window decided audits", registry=registry),
        window_verdicts=Gauge("draftgate_audit_window_verdicts", "Decided audits in that window (at most audit.window)",
                              registry=registry),
        tenant_rate=Gauge("draftgate_audit_tenant_disagreement_rate",
                          "Disagreement rate over a tenant's last audit.window decided audits", ["tenant"],
                          registry=registry),
        category_rate=Gauge("draftgate_audit_category_disagreement_rate",
                            "Disagreement rate over a category's last audit.window decided audits (metadata.category)",
                            ["category"], registry=registry),
        alert_rate=Gauge("draftgate_audit_alert_disagreement_rate",
                         "audit.alert_disagreement_rate: the rate above which the alert fires", registry=registry),
        spent_today=Gauge("draftgate_audit_spent_usd_today", "The audit's spend today (UTC), cluster-wide",
                          registry=registry),
    )
    metrics.alert_rate.set(alert_rate)
    return metrics
