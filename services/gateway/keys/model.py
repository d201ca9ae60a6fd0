"""A virtual key's record and the validation of a new key's settings. Pure.

In Redis a key is a hash named by the SHA-256 of the key (shared/keys.virtual_key): the key itself is
never stored, it is shown once when made. Every field is a string there; "" means unset.
"""

from __future__ import annotations

import datetime
import functools
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.gateway.auth import VIRTUAL_KEY_PREFIX, KeyLimits, key_digest, virtual_key_id
from shared.errors import InvalidRequest

SECRET_BYTES = 32  # 256 random bits: no key can be guessed, so its hash names it safely
NAME = re.compile(r"[A-Za-z0-9_.:@/-]{1,128}")  # tenants and labels: safe in logs, headers and Redis names
DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
UNITS_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def periods(now: float) -> tuple[str, str]:
    """The UTC day (YYYY-MM-DD) and month (YYYY-MM) a moment falls in: the budgets' periods."""
    return _day_periods(int(now // DAY_S))


def period_ends(now: float) -> tuple[float, float]:
    """When the UTC day and month of `now` end (Unix seconds)."""
    return _day_ends(int(now // DAY_S))


DAY_S = 86400  # a UTC day in Unix time (which has no leap seconds): the day of `now` is now // DAY_S


# Every admission and charge asks for its day: worked out once a day, not per request (strftime
# was 2% of a keyed gateway's CPU).
@functools.lru_cache(maxsize=4)
def _day_periods(day: int) -> tuple[str, str]:
    moment = datetime.datetime.fromtimestamp(day * DAY_S, datetime.UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m")


@functools.lru_cache(maxsize=4)
def _day_ends(day: int) -> tuple[float, float]:
    start = datetime.datetime.fromtimestamp(day * DAY_S, datetime.UTC)
    next_month = (start.replace(day=1) + datetime.timedelta(days=32)).replace(day=1)
    return (start + datetime.timedelta(days=1)).timestamp(), next_month.timestamp()


def new_secret() -> str:
    return f"{VIRTUAL_KEY_PREFIX}{secrets.token_urlsafe(SECRET_BYTES)}"


@dataclass(frozen=True)
class KeySpec:
    """What an admin asks for; every limit optional."""

    tenant: str = ""  # "": the key's own id
    name: str = ""  # a label for people
    models: tuple[str, ...] = ()  # tiers, models or deployments it may use; (): all
    limits: KeyLimits = field(default_factory=KeyLimits)
    expires_at: float | None = None  # Unix seconds; None: never


@dataclass(frozen=True)
class VirtualKey:
    id: str
    digest: str
    tenant: str
    name: str
    models: tuple[str, ...]
    limits: KeyLimits
    expires_at: float | None
    created: float
    revoked: float | None = None  # when it was revoked

    def to_redis(self) -> dict[str, str]:
        limits = self.limits
        return {"id": self.id, "tenant": self.tenant, "name": self.name,
                "models": orjson.dumps(list(self.models)).decode() if self.models else "",
                "rpm": _text(limits.rpm), "tpm": _text(limits.tpm), "budget_usd_day": _text(limits.budget_usd_day),
                "budget_usd_month": _text(limits.budget_usd_month), "expires_at": _text(self.expires_at),
                "created": _text(self.created), "revoked": _text(self.revoked)}

    @classmethod
    def from_redis(cls, digest: str, fields: Mapping[bytes | str, bytes | str]) -> VirtualKey:
        get = {_str(name): _str(value) for name, value in fields.items()}.get
        models = get("models") or ""
        return cls(id=get("id") or virtual_key_id(digest), digest=digest, tenant=get("tenant") or "",
                   name=get("name") or "", models=tuple(orjson.loads(models)) if models else (),
                   limits=KeyLimits(rpm=_int(get("rpm")), tpm=_int(get("tpm")),
                                    budget_usd_day=_float(get("budget_usd_day")),
                                    budget_usd_month=_float(get("budget_usd_month"))),
                   expires_at=_float(get("expires_at")), created=_float(get("created")) or 0.0,
                   revoked=_float(get("revoked")))

    def public(self, spend_day: float = 0.0, spend_month: float = 0.0, now: float | None = None) -> dict[str, Any]:
        """What the admin API and the CLI show: everything but the key (which is not kept)."""
        limits = self.limits
        status = "revoked" if self.revoked else ("expired" if now is not None and self.expires_at is not None
                                                 and self.expires_at <= now else "active")
        return {"id": self.id, "object": "virtual_key", "tenant": self.tenant, "name": self.name,
                "models": list(self.models), "rpm": limits.rpm, "tpm": limits.tpm,
                "budget_usd_day": limits.budget_usd_day, "budget_usd_month": limits.budget_usd_month,
                "expires_at": self.expires_at, "created": self.created, "revoked": self.revoked, "status": status,
                "spend_usd_day": round(spend_day, 10), "spend_usd_month": round(spend_month, 10)}


def make_key(spec: KeySpec, now: float) -> tuple[VirtualKey, str]:
    """A new key and its secret (shown once)."""
    secret = new_secret()
    digest = key_digest(secret)
    key_id = virtual_key_id(digest)
    return VirtualKey(id=key_id, digest=digest, tenant=spec.tenant or key_id, name=spec.name, models=spec.models,
                      limits=spec.limits, expires_at=spec.expires_at, created=now), secret


def parse_spec(body: object, known_models: Collection[str], now: float) -> KeySpec:
    """POST /admin/keys's body (and the CLI's options, as the same dict): a 400 naming the bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.", code="invalid_json")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidRequest(f"Unknown field `{unknown[0]}`; a key takes {', '.join(sorted(FIELDS))}.",
                             param=unknown[0], code="unknown_parameter")
    tenant = _name(body, "tenant")
    name = _name(body, "name")
    models = _models(body.get("models"), known_models)
    limits = KeyLimits(rpm=_count(body, "rpm"), tpm=_count(body, "tpm"),
                       budget_usd_day=_usd(body, "budget_usd_day"), budget_usd_month=_usd(body, "budget_usd_month"))
    if "expires_at" in body and "expires_in" in body:
        raise InvalidRequest("Give `expires_at` or `expires_in`, not both.", param="expires_in", code="invalid_value")
    expires_at = _expires_at(body.get("expires_at"), now)
    if body.get("expires_in") is not None:
        expires_at = now + parse_duration(body["expires_in"], "expires_in")
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest("`expires_at` is in the past.", param="expires_at", code="invalid_value")
    return KeySpec(tenant=tenant, name=name, models=models, limits=limits, expires_at=expires_at)


FIELDS = frozenset({"tenant", "name", "models", "rpm", "tpm", "budget_usd_day", "budget_usd_month", "expires_at",
                    "expires_in"})


def parse_duration(value: object, param: str) -> float:
    """Seconds from 3600, "90s", "15m", "12h", "30d" or "2w"."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(f"`{param}` must be seconds or a duration like 30d, 12h, 15m.", param=param,
                             code="invalid_type")
    match = DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    seconds = float(value) if not isinstance(value, str) else (
        float(match.group(1)) * UNITS_S[match.group(2)] if match else -1.0)
    if seconds <= 0:
        raise InvalidRequest(f"`{param}` must be a positive duration (seconds, or like 30d, 12h, 15m).", param=param,
                             code="invalid_value")
    return seconds


def _expires_at(value: object, now: float) -> float | None:
    """Unix seconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.UTC)
            return moment.timestamp()
    raise InvalidRequest("`expires_at` must be Unix seconds or an ISO 8601 time.", param="expires_at",
                         code="invalid_value")


def _name(body: dict[str, Any], param: str) -> str:
    value = body.get(param)
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise InvalidRequest(f"`{param}` must be 1-128 letters, digits or _.:@/-", param=param, code="invalid_value")
    return value


def _models(value: object, known: Collection[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(model, str) and model for model in value):
        raise InvalidRequest("`models` must be a list of tier, model or deployment names.", param="models",
                             code="invalid_type")
    for index, model in enumerate(value):
        if model not in known:
            raise InvalidRequest(f"`models[{index}]`: `{model}` is no tier, model or deployment of this gateway; "
                                 f"use {', '.join(known)}.", param=f"models[{index}]", code="model_not_found")
    return tuple(dict.fromkeys(value))


def _count(body: dict[str, Any], param: str) -> int | None:
    value = body.get(param)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"`{param}` must be a whole number >= 1 (or null: no limit).", param=param,
                             code="invalid_value")
    return value


def _usd(body: dict[str, Any], param: str) -> float | None:
    value = body.get(param)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise InvalidRequest(f"`{param}` must be a number of USD >= 0 (or null: no budget).", param=param,
                             code="invalid_value")
    return float(value)


def _text(value: float | None) -> str:
    return "" if value is None else repr(value)


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def _float(value: str | None) -> float | None:
    return float(value) if value else None
