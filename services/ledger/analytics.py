"""Analytics over ledger_records, computed by the database: one SELECT per figure family, grouped
by the requested column, so the work is the database's however many records there are.

Latency percentiles are interpolated like PostgreSQL's percentile_cont (the value at rank
1 + p * (n - 1), linear between neighbours). PostgreSQL computes them with percentile_cont itself;
SQLite has no such aggregate, so there each row is numbered within its group by a window function
(row_number() over the group, ordered by the value, and count(*) over the group), and the two
rows around the rank are picked and interpolated in the same SELECT. Both give the same numbers.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from services.ledger.params import GROUP_COLUMNS, Window
from services.ledger.schema import TOKEN_COLUMNS, records

PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
LATENCY_COLUMNS = ("latency_ms", "ttft_ms")
CACHE_HITS = ("exact", "semantic")
ALL = "all"  # the group key when nothing is grouped

Stats = dict[str, Any]


def filters(window: Window, template_id: str | None = None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if window.start is not None:
        where.append(records.c.time >= window.start)
    if window.end is not None:
        where.append(records.c.time < window.end)
    if window.tenant is not None:
        where.append(tenant_filter(records.c.tenant, window.tenant))
    if template_id is not None:
        where.append(records.c.template_id == template_id)
    return where


def tenant_filter(column: ColumnElement[str], tenant: str) -> ColumnElement[bool]:
    """A tenant and its sub-tenants (`<tenant>:<X-Tenant-ID>`, as the gateway names them)."""
    return sa.or_(column == tenant, column.startswith(f"{tenant}:", autoescape=True))


def _group(group_by: str | None) -> ColumnElement[Any]:
    """The grouped column; not grouped, a constant (selected, never grouped by: PostgreSQL refuses that)."""
    return records.c[GROUP_COLUMNS[group_by]] if group_by else sa.literal_column(f"'{ALL}'")


def _grouped(query: sa.Select[Any], group_by: str | None, *also: ColumnElement[Any]) -> sa.Select[Any]:
    if group_by:
        return query.group_by(_group(group_by), *also).order_by(_group(group_by), *also)
    return query.group_by(*also).order_by(*also) if also else query


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _ratio(part: ColumnElement[Any], whole: ColumnElement[Any]) -> ColumnElement[float]:
    return sa.cast(part, sa.Float) / sa.cast(sa.func.nullif(whole, 0), sa.Float)


def _sum_int(column: ColumnElement[Any]) -> ColumnElement[int]:
    # PostgreSQL's sum(bigint) is numeric: cast back so the driver hands over an int.
    return sa.cast(sa.func.coalesce(sa.func.sum(column), 0), sa.BigInteger)


async def stats(conn: AsyncConnection, window: Window, group_by: str | None,
                template_id: str | None = None) -> dict[str, Stats]:
    """Every figure per group key (ALL when not grouped), in the groups' order."""
    where = filters(window, template_id)
    group = _group(group_by).label("g")
    succeeded = _count_if(records.c.status.between(200, 399))
    lookups = _count_if(records.c.cache != "")
    hits = _count_if(records.c.cache.in_(CACHE_HITS))
    count = sa.func.count()
    cost, baseline = sa.func.sum(records.c.cost_usd), sa.func.sum(records.c.baseline_usd)
    columns: list[Any] = [
        group, count.label("requests"), succeeded.label("succeeded"), _ratio(succeeded, count).label("success_rate"),
        lookups.label("cache_lookups"), hits.label("cache_hits"), _ratio(hits, lookups).label("cache_hit_rate"),
        _count_if(records.c.degraded).label("degraded"), _count_if(records.c.status >= 400).label("errors"),
        sa.func.avg(records.c.latency_ms).label("latency_mean"), sa.func.avg(records.c.ttft_ms).label("ttft_mean"),
        cost.label("cost_usd"), baseline.label("baseline_usd"), sa.func.sum(records.c.saved_usd).label("saved_usd"),
        _ratio(sa.func.sum(records.c.saved_usd), baseline).label("saving_rate"),
        (count - sa.func.count(records.c.cost_usd)).label("unpriced"),
        *(_sum_int(records.c[name]).label(name) for name in TOKEN_COLUMNS),
    ]
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        columns += [sa.func.percentile_cont(p).within_group(records.c[name]).label(f"{name}_{label}")
                    for name in LATENCY_COLUMNS for label, p in PERCENTILES.items()]
    query = _grouped(sa.select(*columns).where(*where), group_by)
    found: dict[str, Stats] = {}
    for row in (await conn.execute(query)).mappings():
        found[_key(row["g"])] = figures = _shape(row)
        if postgres:
            for name in LATENCY_COLUMNS:
                figures[name].update({label: row[f"{name}_{label}"] for label in PERCENTILES})
    if not found:
        return {} if group_by else {ALL: _shape(None)}
    for key, decision, n in await conn.execute(_decisions(where, group_by)):
        found[_key(key)]["decisions"][decision or "none"] = n
    if not postgres:
        for name in LATENCY_COLUMNS:
            for key, values in (await _window_percentiles(conn, where, group_by, name)).items():
                found[key][name].update(values)
    return found


def _decisions(where: list[ColumnElement[bool]], group_by: str | None) -> sa.Select[Any]:
    query = sa.select(_group(group_by).label("g"), records.c.decision, sa.func.count()).where(*where)
    return _grouped(query, group_by, records.c.decision)


async def _window_percentiles(conn: AsyncConnection, where: list[ColumnElement[bool]], group_by: str | None,
                              name: str) -> dict[str, dict[str, float | None]]:
    value = records.c[name]
    partition = records.c[GROUP_COLUMNS[group_by]] if group_by else None
    ranked = (sa.select(_group(group_by).label("g"), value.label("v"),
                        sa.func.row_number().over(partition_by=partition, order_by=value).label("rn"),
                        sa.func.count().over(partition_by=partition).label("n"))
              .where(*where, value.is_not(None)).subquery("ranked"))
    n = sa.func.max(ranked.c.n)
    columns = []
    for label, p in PERCENTILES.items():
        rank = 1 + p * (ranked.c.n - 1)  # per row: n is the same on every row of a group
        low = sa.cast(rank, sa.Integer)  # SQLite truncates a positive REAL cast to INTEGER
        below = sa.func.max(sa.case((ranked.c.rn == low, ranked.c.v)))
        above = sa.func.coalesce(sa.func.max(sa.case((ranked.c.rn == low + 1, ranked.c.v))), below)
        fraction = (1 + p * (n - 1)) - sa.cast(1 + p * (n - 1), sa.Integer)
        columns.append((below + fraction * (above - below)).label(label))
    query = sa.select(ranked.c.g, *columns).group_by(ranked.c.g)  # SQLite only: a constant may be grouped by
    return {_key(row["g"]): {label: row[label] for label in PERCENTILES}
            for row in (await conn.execute(query)).mappings()}


def _key(value: Any) -> str:
    return "" if value is None else str(value)


def _shape(row: Any) -> Stats:
    """One group's figures as the API answers them (None row: no requests at all)."""
    get = (lambda name: row[name]) if row is not None else (lambda name: None)
    requests = get("requests") or 0
    return {
        "requests": requests, "succeeded": get("succeeded") or 0, "errors": get("errors") or 0,
        "success_rate": get("success_rate"), "decisions": {},
        "cache": {"lookups": get("cache_lookups") or 0, "hits": get("cache_hits") or 0,
                  "hit_rate": get("cache_hit_rate")},
        "degraded": get("degraded") or 0,
        "latency_ms": {"mean": get("latency_mean"), **dict.fromkeys(PERCENTILES)},
        "ttft_ms": {"mean": get("ttft_mean"), **dict.fromkeys(PERCENTILES)},
        "tokens": {name.removesuffix("_tokens"): get(name) or 0 for name in TOKEN_COLUMNS},
        "cost_usd": get("cost_usd"), "baseline_usd": get("baseline_usd"), "saved_usd": get("saved_usd"),
        "saving_rate": get("saving_rate"), "unpriced": get("unpriced") or 0,
    }


async def analytics(conn: AsyncConnection, window: Window, template_id: str | None = None) -> dict[str, Any]:
    """The totals over the window, and per group when window.group_by is set."""
    body: dict[str, Any] = window.describe()
    if template_id is not None:
        body["template_id"] = template_id
    body["totals"] = (await stats(conn, window, None, template_id))[ALL]
    if window.group_by:
        grouped = await stats(conn, window, window.group_by, template_id)
        body["groups"] = [{"key": key, **values} for key, values in grouped.items()]
    return body


async def spend(conn: AsyncConnection, window: Window) -> dict[str, Any]:
    """Spend per key (with its tenant) and per tenant, the largest first."""
    where = filters(window)

    def figures() -> list[Any]:
        return [sa.func.count().label("requests"), sa.func.sum(records.c.cost_usd).label("cost_usd"),
                sa.func.sum(records.c.baseline_usd).label("baseline_usd"),
                sa.func.sum(records.c.saved_usd).label("saved_usd"),
                _sum_int(records.c.prompt_tokens).label("prompt_tokens"),
                _sum_int(records.c.completion_tokens).label("completion_tokens")]

    def order(query: sa.Select[Any]) -> sa.Select[Any]:
        return query.order_by(sa.func.coalesce(sa.func.sum(records.c.cost_usd), 0).desc())

    keys = order(sa.select(records.c.key_id, records.c.tenant, *figures()).where(*where)
                 .group_by(records.c.key_id, records.c.tenant)).order_by(records.c.key_id)
    tenants = order(sa.select(records.c.tenant, *figures()).where(*where)
                    .group_by(records.c.tenant)).order_by(records.c.tenant)
    total = sa.select(*figures()).where(*where)
    return {**window.describe(),
            "total": dict((await conn.execute(total)).mappings().one()),
            "keys": [dict(row) for row in (await conn.execute(keys)).mappings()],
            "tenants": [dict(row) for row in (await conn.execute(tenants)).mappings()]}
