"""Wire messages -> table rows (pure): a LedgerRecord's account flattened into token and cost columns.

Every value is checked for its column's type here, so a malformed record is dropped as undecodable
(ValueError, WireError) instead of reaching the database, which would refuse the whole batch: a
string where a number belongs, an integer out of range, a NUL character (PostgreSQL text cannot hold
one: removed), a number JSON cannot hold (NaN, infinities: NULL).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from services.ledger.schema import TOKEN_COLUMNS
from shared.messages import Account, Feedback, LedgerRecord, UpstreamCall

# Calls whose text is not what the client got: they cost tokens but served nothing.
UNSERVED_ROLES = frozenset({"aborted_draft", "wasted_speculation"})
TIERS = frozenset({"drafter", "heavyweight"})
MAX_STATUS = 999
MAX_TOKENS = 2**40  # per call: far above any context window, far below BIGINT's sums


def utc(seconds: object) -> datetime:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise ValueError(f"time is not a finite number: {seconds!r}")
    return datetime.fromtimestamp(seconds, UTC)  # OverflowError, ValueError past year 9999


def text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} is not a string: {type(value).__name__}")
    return value.replace("\x00", "") if "\x00" in value else value


def integer(value: object, name: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ValueError(f"{name} is not an integer from 0 to {high}: {value!r}")
    return value


def flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} is not a boolean: {value!r}")
    return value


def number(value: object, name: str) -> float | None:
    """NaN and infinities become NULL: PostgreSQL would keep them and every sum after would be NaN."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} is not a number: {value!r}")
    value = float(value)
    return value if math.isfinite(value) else None


def record_row(record: LedgerRecord) -> dict[str, Any]:
    """One ledger_records row. Raises WireError or ValueError for a malformed record."""
    account = Account.from_wire(record.account) if record.account else Account()
    calls = [_call(call) for call in account.calls]
    request_id = text(record.request_id, "request_id")
    if not request_id:
        raise ValueError("request_id is empty")
    at = utc(record.time)
    cost, baseline = number(account.cost_usd, "cost_usd"), number(account.baseline_usd, "baseline_usd")
    row: dict[str, Any] = {
        "request_id": request_id, "time": at, "day": at.date().isoformat(),
        "key_id": text(record.key_id, "key_id"), "tenant": text(record.tenant, "tenant"),
        "template_id": text(record.template_id, "template_id"), "session_id": text(record.session_id, "session_id"),
        "model": text(record.model, "model"), "served_model": served_model(text(record.model, "model"), calls),
        "stream": flag(record.stream, "stream"), "status": integer(record.status, "status", MAX_STATUS),
        "decision": text(record.decision, "decision"), "tier": text(record.tier, "tier"),
        "deployment": text(record.deployment, "deployment"), "cache": text(record.cache, "cache"),
        "error": text(record.error, "error"), "degraded": flag(record.degraded, "degraded"),
        "latency_ms": number(record.latency_ms, "latency_ms"), "ttft_ms": number(record.ttft_ms, "ttft_ms"),
        "draft_entropy": number(record.draft_entropy, "draft_entropy"),
        "cost_usd": cost, "baseline_usd": baseline,
        "saved_usd": None if cost is None or baseline is None else baseline - cost,
        "calls": calls,
    }
    row.update(token_columns(calls))
    return row


def token_columns(calls: list[dict[str, Any]]) -> dict[str, int]:
    """Tokens in and out: of every call, per tier, and of the calls whose text was not served."""
    tokens = dict.fromkeys(TOKEN_COLUMNS, 0)
    for call in calls:
        prompt, completion, tier, role = call["prompt_tokens"], call["completion_tokens"], call["tier"], call["role"]
        tokens["prompt_tokens"] += prompt
        tokens["completion_tokens"] += completion
        if tier in TIERS:
            tokens[f"{tier}_prompt_tokens"] += prompt
            tokens[f"{tier}_completion_tokens"] += completion
        if role in UNSERVED_ROLES:
            tokens[f"{role}_prompt_tokens"] += prompt
            tokens[f"{role}_completion_tokens"] += completion
    return tokens


def served_model(asked: str, calls: list[dict[str, Any]]) -> str:
    """The model of the last call whose text reached the client; else what was asked (a cache hit,
    a refusal)."""
    served = [call["model"] for call in calls if call["role"] not in UNSERVED_ROLES and call["model"]]
    return served[-1] if served else asked


def _call(call: UpstreamCall) -> dict[str, Any]:
    """One call as the `calls` JSON keeps it, every value of its type."""
    return {"tier": text(call.tier, "tier"), "deployment": text(call.deployment, "deployment"),
            "model": text(call.model, "model"),
            "prompt_tokens": integer(call.prompt_tokens, "prompt_tokens", MAX_TOKENS),
            "completion_tokens": integer(call.completion_tokens, "completion_tokens", MAX_TOKENS),
            "role": text(call.role, "role"), "cost_usd": number(call.cost_usd, "cost_usd")}


def feedback_row(message: Feedback) -> dict[str, Any]:
    return {"request_id": text(message.request_id, "request_id"), "verdict": text(message.verdict, "verdict"),
            "comment": text(message.comment, "comment"), "key_id": text(message.key_id, "key_id"),
            "tenant": text(message.tenant, "tenant"), "time": utc(message.time)}
