"""The audit's cluster-wide state in Redis: what every auditor writes, and what the gauges and
GET /v1/system/audit read (the gateway reads it through this module: one reader of one format).

- AUDIT_RECENT and one list per tenant and per category: the latest `audit.window` decided verdicts
  (JSON records, newest first), so a disagreement rate is over the same window whichever router asks;
- AUDIT_SCOPES: each tenant and category seen ("tenant:<t>", "category:<c>") -> its last verdict's time;
- AUDIT_COUNTS: every verdict's total (skipped and failed audits, and client feedback, too);
- AUDIT_LABELLED_STREAM: each decided audit's calibration record (shared.messages.AuditLabel).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from shared.keys import (
    AUDIT_COUNTS,
    AUDIT_GROUP,
    AUDIT_LABELLED_STREAM,
    AUDIT_RECENT,
    AUDIT_SCOPES,
    AUDIT_STREAM,
    MESSAGE_FIELD,
    audit_recent_category,
    audit_recent_tenant,
)
from shared.messages import AuditLabel, encode

TENANT, CATEGORY = "tenant", "category"
SCOPE_KEEP_S = 7 * 24 * 3600  # a tenant's or category's window without a new verdict this long expires
AGREE, DISAGREE = "agree", "disagree"
DECIDED = (AGREE, DISAGREE)
CLIENT_GOOD, CLIENT_BAD = "client_good", "client_bad"  # the gateway's POST /v1/feedback, in AUDIT_COUNTS too


@dataclass(frozen=True)
class Rate:
    verdicts: int
    disagreements: int

    @property
    def rate(self) -> float:
        return self.disagreements / self.verdicts if self.verdicts else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"verdicts": self.verdicts, "disagreements": self.disagreements, "rate": round(self.rate, 4)}


def disagreement(records: Iterable[dict[str, Any]]) -> Rate:
    """The share of disagreements among decided verdicts."""
    verdicts = disagreements = 0
    for record in records:
        if record.get("verdict") in DECIDED:
            verdicts += 1
            disagreements += record["verdict"] == DISAGREE
    return Rate(verdicts, disagreements)


def scope_key(scope: str) -> str:
    """The list of a scope named as in AUDIT_SCOPES ("tenant:<t>" / "category:<c>")."""
    kind, _, name = scope.partition(":")
    return audit_recent_tenant(name) if kind == TENANT else audit_recent_category(name)


async def record(redis: Redis, verdict: str, window: int, entry: dict[str, Any] | None = None,
                 label: AuditLabel | None = None, labelled_maxlen: int = 100_000, done: bytes | None = None) -> None:
    """Count a verdict; a decided one (`entry`) joins the windows, its label the labelled stream; `done`, the
    sample's entry, is acked with them: one atomic round trip, so a sample is never recorded twice."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(AUDIT_COUNTS, verdict, 1)
        if entry is not None:
            raw = json.dumps(entry, separators=(",", ":"))
            keys = [AUDIT_RECENT]
            if entry.get("tenant"):
                keys.append(audit_recent_tenant(entry["tenant"]))
                pipe.hset(AUDIT_SCOPES, f"{TENANT}:{entry['tenant']}", entry["time"])
            if entry.get("category"):
                keys.append(audit_recent_category(entry["category"]))
                pipe.hset(AUDIT_SCOPES, f"{CATEGORY}:{entry['category']}", entry["time"])
            for key in keys:
                pipe.lpush(key, raw)
                pipe.ltrim(key, 0, window - 1)
                if key != AUDIT_RECENT:  # a tenant or category gone quiet for SCOPE_KEEP_S is forgotten
                    pipe.expire(key, SCOPE_KEEP_S)
        if label is not None:
            pipe.xadd(AUDIT_LABELLED_STREAM, {MESSAGE_FIELD: encode(label)}, maxlen=labelled_maxlen, approximate=True)
        if done is not None:
            pipe.xack(AUDIT_STREAM, AUDIT_GROUP, done)
        await pipe.execute()


def _records(raw: Sequence[bytes]) -> list[dict[str, Any]]:
    out = []
    for item in raw:
        try:
            value = json.loads(item)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


@dataclass
class Snapshot:
    """The cluster's audit state at one moment."""

    overall: Rate
    recent: list[dict[str, Any]]
    tenants: dict[str, Rate] = field(default_factory=dict)
    categories: dict[str, Rate] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)  # scopes whose window expired

    def to_json(self, recent: int) -> dict[str, Any]:
        return {"overall": self.overall.to_json(), "tenants": {k: v.to_json() for k, v in self.tenants.items()},
                "categories": {k: v.to_json() for k, v in self.categories.items()}, "counts": self.counts,
                "recent": self.recent[:recent]}


async def snapshot(redis: Redis, tenant: str | None = None) -> Snapshot:
    """Everything (tenant None), or one tenant's own: its window, its rate, and no other scope."""
    if tenant is not None:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.lrange(audit_recent_tenant(tenant), 0, -1)
            (raw,) = await pipe.execute()
        records = _records(raw)
        rate = disagreement(records)
        return Snapshot(rate, records, tenants={tenant: rate} if records else {})
    async with redis.pipeline(transaction=False) as pipe:
        pipe.lrange(AUDIT_RECENT, 0, -1)
        pipe.hkeys(AUDIT_SCOPES)
        pipe.hgetall(AUDIT_COUNTS)
        raw, scopes, counts = await pipe.execute()
    names = sorted(scope.decode() for scope in scopes)
    async with redis.pipeline(transaction=False) as pipe:
        for scope in names:
            pipe.lrange(scope_key(scope), 0, -1)
        lists = await pipe.execute() if names else []
    out = Snapshot(disagreement(_records(raw)), _records(raw),
                   counts={key.decode(): int(value) for key, value in counts.items()})
    for scope, items in zip(names, lists, strict=True):
        if not items:  # expired: gone quiet (prune() drops its name)
            out.gone.append(scope)
            continue
        kind, _, name = scope.partition(":")
        (out.tenants if kind == TENANT else out.categories)[name] = disagreement(_records(items))
    return out


async def prune(redis: Redis, scopes: Sequence[str]) -> None:
    """Forget the names of scopes whose windows expired (snapshot lists them in `gone`)."""
    if scopes:
        await redis.hdel(AUDIT_SCOPES, *scopes)
