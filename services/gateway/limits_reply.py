"""What the key script's answer (limits.lua) means for the client: the Principal admitted, or the
401 / 403 / 429 refusing it, and OpenAI's x-ratelimit-* headers. Pure."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from services.gateway.auth import KeyLimits, KeyLookup, Principal, invalid_key
from shared.errors import ApiError, PermissionDenied, QuotaExceeded, RateLimited, TokensRateLimited
from shared.gcra import WINDOW_S


@dataclass(frozen=True)
class Refused:
    error: ApiError
    reason: str  # auth | forbidden | budget | rate_limit: the refusals metric's label
    principal: Principal | None = None  # who it would have been (a key that exists), for the ledger


def admitted(lookup: KeyLookup, token_given: bool, reply: Sequence[bytes | str]) -> Principal | Refused:
    """The script's reply ({verdict, detail, tenant, rpm, tpm, budgets, levels, spend, wait}) made sense of."""
    verdict, detail = _str(reply[0]), _str(reply[1])
    if verdict == "unknown":
        if lookup.open and int(detail or 0) == 0:  # open mode and no virtual key exists yet: anonymous
            return Principal(key_id="", tenant=lookup.anonymous_tenant)
        return Refused(invalid_key(token_given), "auth")
    known = Principal(key_id=lookup.key_id, tenant="", virtual=True)
    if verdict in ("revoked", "expired"):
        return Refused(invalid_key(True, f"this key has {'been revoked' if verdict == 'revoked' else 'expired'}"),
                       "auth", known)
    if verdict == "forbidden":
        models = orjson.loads(detail) if detail else []
        return Refused(PermissionDenied(f"This key may not use this model; it may use {', '.join(models)}.",
                                        param="model", code="model_not_allowed"), "forbidden", known)
    tenant, rpm, tpm, budget_day, budget_month, used_r, used_k, spent_day, spent_month, wait_ms = [
        value.decode() if isinstance(value, bytes) else str(value) for value in reply[2:12]]
    limits = key_limits(rpm, tpm, budget_day, budget_month)
    principal = Principal(key_id=lookup.key_id, tenant=lookup.tenant_of_key(tenant),
                          virtual=True, limits=limits, used_requests=float(used_r), used_tokens=float(used_k))
    if verdict == "budget":
        budget, spent = (limits.budget_usd_day, spent_day) if detail == "day" else (limits.budget_usd_month,
                                                                                     spent_month)
        period = "today (UTC)" if detail == "day" else "this month (UTC)"
        return Refused(QuotaExceeded(f"You exceeded your current quota: this key's budget of {budget} USD {period} is "
                                     f"spent ({float(spent):.6f} USD).", code="insufficient_quota",
                                     headers={**rate_limit_headers(principal), "x-should-retry": "false"}), "budget",
                       principal)
    if verdict == "rate":
        wait_s = int(wait_ms) / 1000
        error_type = TokensRateLimited if detail == "tpm" else RateLimited
        limit = limits.tpm if detail == "tpm" else limits.rpm
        used = principal.used_tokens if detail == "tpm" else principal.used_requests
        what = "tokens per min (TPM)" if detail == "tpm" else "requests per min (RPM)"
        headers = {**rate_limit_headers(principal), "Retry-After": str(max(1, math.ceil(wait_s))),
                   "retry-after-ms": str(int(wait_ms))}
        return Refused(error_type(f"Rate limit reached for this key on {what}: Limit {limit}, Used {math.floor(used)}. "
                                  f"Please try again in {duration(wait_s)}.", code="rate_limit_exceeded",
                                  headers=headers), "rate_limit", principal)
    return principal


@functools.lru_cache(maxsize=1024)  # a key's limits change rarely: read once, not per request
def key_limits(rpm: str, tpm: str, budget_day: str, budget_month: str) -> KeyLimits:
    """The limits as the script read them from the key's record ("" or "0": off)."""
    return KeyLimits(rpm=int(rpm) or None, tpm=int(tpm) or None, budget_usd_day=_float(budget_day),
                     budget_usd_month=_float(budget_month))


def rate_limit_headers(principal: Principal) -> dict[str, str]:
    """OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens} for a key with that limit;
    reset is how long until the bucket is empty again (OpenAI: "until the rate limit resets to its
    initial state")."""
    headers: dict[str, str] = {}
    for kind, limit, used in (("requests", principal.limits.rpm, principal.used_requests),
                              ("tokens", principal.limits.tpm, principal.used_tokens)):
        if limit:
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(limit - used + 1e-6)))
            headers[f"x-ratelimit-reset-{kind}"] = duration(used * WINDOW_S / limit)
    return headers


def duration(seconds: float) -> str:
    """As OpenAI writes its resets: 20ms, 1.5s, 6m0s, 1h2m3s."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 1000) / 1000:g}s"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: str) -> float | None:
    return float(value) if value else None
