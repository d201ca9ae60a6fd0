"""The ledger service's Prometheus metrics (its own registry, so tests start from zero)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class LedgerMetrics:
    rows: Counter  # labels: table, result = stored | invalid


def create_metrics(registry: CollectorRegistry) -> LedgerMetrics:
    return LedgerMetrics(
        rows=Counter("draftgate_ledger_rows", "Stream entries the ledger handled, by table and result: stored "
                     "(committed; one delivered twice is stored once) or invalid (undecodable or refused: dropped)",
                     ["table", "result"], registry=registry),
    )
