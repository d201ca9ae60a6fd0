"""Wire messages -> table rows (pure): a LedgerRecord's account flattened into token and cost columns."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from services.ledger.schema import TOKEN_COLUMNS
from shared.messages import Account, Feedback, LedgerRecord

# Calls whose text is not what the client got: they cost tokens but served nothing.
UNSERVED_ROLES = frozenset({"aborted_draft", "wasted_speculation"})
TIERS = frozenset({"drafter", "heavyweight"})


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _finite(value: float | None) -> float | None:
    """NaN and infinities become NULL: PostgreSQL would keep them and every sum after would be NaN."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def record_row(record: LedgerRecord) -> dict[str, Any]:
    """One ledger_records row. Raises WireError for a malformed account."""
    account = Account.from_wire(record.account) if record.account else Account()
    at = utc(record.time)
    row: dict[str, Any] = {
        "request_id": record.request_id, "time": at, "day": at.date().isoformat(),
        "key_id": record.key_id, "tenant": record.tenant, "template_id": record.template_id,
        "session_id": record.session_id, "model": record.model, "served_model": served_model(record, account),
        "stream": record.stream, "status": record.status, "decision": record.decision, "tier": record.tier,
        "deployment": record.deployment, "cache": record.cache, "error": record.error, "degraded": record.degraded,
        "latency_ms": _finite(record.latency_ms), "ttft_ms": _finite(record.ttft_ms),
        "draft_entropy": _finite(record.draft_entropy),
        "cost_usd": _finite(account.cost_usd), "baseline_usd": _finite(account.baseline_usd),
        "saved_usd": _finite(account.saved_usd), "calls": _calls(record, account),
    }
    row.update(token_columns(account))
    return row


def token_columns(account: Account) -> dict[str, int]:
    tokens = dict.fromkeys(TOKEN_COLUMNS, 0)
    for call in account.calls:
        prompt, completion = int(call.prompt_tokens or 0), int(call.completion_tokens or 0)
        tokens["prompt_tokens"] += prompt
        tokens["completion_tokens"] += completion
        if call.tier in TIERS:
            tokens[f"{call.tier}_prompt_tokens"] += prompt
            tokens[f"{call.tier}_completion_tokens"] += completion
        if call.role in UNSERVED_ROLES:
            tokens[f"{call.role}_prompt_tokens"] += prompt
            tokens[f"{call.role}_completion_tokens"] += completion
    return tokens


def _calls(record: LedgerRecord, account: Account) -> list[dict[str, Any]]:
    """The calls as the gateway sent them (validated by Account.from_wire), rebuilt only when a cost
    is not a finite number (which JSON cannot hold)."""
    if all(call.cost_usd is None or math.isfinite(call.cost_usd) for call in account.calls):
        return list((record.account or {}).get("calls") or ())
    return [_call(call) for call in account.calls]


def served_model(record: LedgerRecord, account: Account) -> str:
    """The model of the last call whose text reached the client; else what was asked (a cache hit,
    a refusal)."""
    served = [call.model for call in account.calls if call.role not in UNSERVED_ROLES and call.model]
    return served[-1] if served else record.model


def _call(call: Any) -> dict[str, Any]:
    return {"tier": call.tier, "deployment": call.deployment, "model": call.model,
            "prompt_tokens": call.prompt_tokens, "completion_tokens": call.completion_tokens, "role": call.role,
            "cost_usd": _finite(call.cost_usd)}


def feedback_row(message: Feedback) -> dict[str, Any]:
    return {"request_id": message.request_id, "verdict": message.verdict, "comment": message.comment,
            "key_id": message.key_id, "tenant": message.tenant, "time": utc(message.time)}
