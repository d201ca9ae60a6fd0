"""Wire messages -> table rows (pure): a LedgerRecord's account flattened into token and cost columns."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from shared.messages import Account, Feedback, LedgerRecord

# Calls whose text is not what the client got: they cost tokens but served nothing.
UNSERVED_ROLES = frozenset({"aborted_draft", "wasted_speculation"})


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
        "request_id": record.request_id, "time": at, "day": at.strftime("%Y-%m-%d"),
        "key_id": record.key_id, "tenant": record.tenant, "template_id": record.template_id,
        "session_id": record.session_id, "model": record.model, "served_model": served_model(record, account),
        "stream": record.stream, "status": record.status, "decision": record.decision, "tier": record.tier,
        "deployment": record.deployment, "cache": record.cache, "error": record.error, "degraded": record.degraded,
        "latency_ms": _finite(record.latency_ms), "ttft_ms": _finite(record.ttft_ms),
        "draft_entropy": _finite(record.draft_entropy),
        "cost_usd": _finite(account.cost_usd), "baseline_usd": _finite(account.baseline_usd),
        "saved_usd": _finite(account.saved_usd),
        "calls": [_call(call) for call in account.calls],
    }
    row.update(token_columns(account))
    return row


def token_columns(account: Account) -> dict[str, int]:
    tokens = dict.fromkeys(("prompt_tokens", "completion_tokens", "drafter_prompt_tokens",
                            "drafter_completion_tokens", "heavyweight_prompt_tokens",
                            "heavyweight_completion_tokens", "aborted_draft_prompt_tokens",
                            "aborted_draft_completion_tokens", "wasted_speculation_prompt_tokens",
                            "wasted_speculation_completion_tokens"), 0)
    for call in account.calls:
        prompt, completion = int(call.prompt_tokens or 0), int(call.completion_tokens or 0)
        prefixes = [""]
        if call.tier in ("drafter", "heavyweight"):
            prefixes.append(f"{call.tier}_")
        if call.role in UNSERVED_ROLES:
            prefixes.append(f"{call.role}_")
        for prefix in prefixes:
            tokens[f"{prefix}prompt_tokens"] += prompt
            tokens[f"{prefix}completion_tokens"] += completion
    return tokens


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
