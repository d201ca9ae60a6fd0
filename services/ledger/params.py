"""The analytics endpoints' query parameters (pure): from/to, group_by and a tenant filter.

Shared by the ledger service and the gateway, which checks them before proxying so a bad value is
a 400 naming the parameter even when the ledger is down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from shared.errors import InvalidRequest

# group_by value -> the ledger_records column grouped on.
GROUP_COLUMNS = {"key": "key_id", "tenant": "tenant", "template": "template_id", "model": "served_model",
                 "day": "day"}
TIME_HELP = "a unix timestamp in seconds, or an ISO 8601 date or date-time (UTC unless it names an offset)"
MAX_TIMESTAMP_S = 253402300799  # 9999-12-31T23:59:59Z


@dataclass(frozen=True)
class Window:
    """Which records a query covers: start <= time < end, one tenant or all, grouped or not."""

    start: datetime | None = None
    end: datetime | None = None
    group_by: str | None = None
    tenant: str | None = None  # None: every tenant

    def scoped(self, tenant: str) -> Window:
        return replace(self, tenant=tenant)

    def to_params(self) -> dict[str, str]:
        """The query string that parses back into this window (the gateway's proxy sends it on)."""
        params = {}
        if self.start is not None:
            params["from"] = self.start.isoformat()
        if self.end is not None:
            params["to"] = self.end.isoformat()
        if self.group_by is not None:
            params["group_by"] = self.group_by
        if self.tenant is not None:
            params["tenant"] = self.tenant
        return params

    def describe(self) -> dict[str, str | None]:
        return {"from": _iso(self.start), "to": _iso(self.end), "group_by": self.group_by, "tenant": self.tenant}


def parse_window(query: Mapping[str, str], *, grouping: bool = True) -> Window:
    """Raises InvalidRequest naming the parameter (`from`, `to`, `group_by`)."""
    start = parse_time(query["from"], "from") if "from" in query else None
    end = parse_time(query["to"], "to") if "to" in query else None
    if start is not None and end is not None and end <= start:
        raise InvalidRequest("`to` must be later than `from`.", param="to", code="invalid_time_range")
    group_by = query.get("group_by") or None
    if group_by is not None and not grouping:
        raise InvalidRequest("`group_by` is not supported here.", param="group_by", code="invalid_group_by")
    if group_by is not None and group_by not in GROUP_COLUMNS:
        raise InvalidRequest(f"`group_by` must be one of: {', '.join(GROUP_COLUMNS)}; got {group_by!r}.",
                             param="group_by", code="invalid_group_by")
    tenant = query.get("tenant")
    if tenant is not None:
        check_name(tenant, "tenant")
    return Window(start, end, group_by, tenant)


def check_name(value: str, param: str) -> str:
    """A tenant or template id as the ledger stores them: no NUL (PostgreSQL text cannot hold one)."""
    if "\x00" in value:
        raise InvalidRequest(f"`{param}` must not contain NUL characters.", param=param, code="invalid_value")
    return value


def parse_time(value: str, param: str) -> datetime:
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _parse_iso(text, param)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_TIMESTAMP_S:
        raise InvalidRequest(f"`{param}` is out of range: {value!r}.", param=param, code="invalid_time")
    return datetime.fromtimestamp(seconds, UTC)


def _parse_iso(text: str, param: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)  # also a bare date (Python 3.11+)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(f"`{param}` must be {TIME_HELP}; got {text!r}.", param=param,
                             code="invalid_time") from None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
