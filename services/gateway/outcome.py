"""What became of one request, filled in as it is answered (or refused, or fails), and the ledger
record made from it at the end. Pure."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from shared.errors import ApiError
from shared.messages import Account, LedgerRecord, Reply, WireError
from shared.pricing import Price

log = structlog.get_logger(__name__)


@dataclass
class Outcome:
    """Filled along every path of a chat completion; the finish step reads it (limits, ledger)."""

    status: int = 0
    decision: str = ""  # the head reply's decision; cache_hit; error
    tier: str = ""
    deployment: str = ""
    account: Account | None = None  # Reply.account of the last reply that carried content
    cache: str = ""  # exact | semantic | miss | "" (not looked up)
    error: str = ""  # the error's code (or its type) when status >= 400
    ttft_ms: float | None = None  # streams: when the first content chunk was written to the client
    draft_entropy: float | None = None
    degraded: bool = False
    account_wire: dict | None = None  # the account as the reply carried it: what the ledger record passes on

    def head(self, reply: Reply) -> None:
        """The routing decision, from the head reply."""
        self.decision = reply.decision or ""
        self.tier = reply.tier or ""
        self.draft_entropy = reply.draft_entropy
        self.degraded = self.degraded or reply.degraded

    def decided(self, final: dict) -> None:
        """A progressive stream's decision, made after its head went out (the last chunk's `draftgate` field)."""
        self.decision = str(final.get("decision") or self.decision)
        self.tier = str(final.get("tier") or self.tier)
        if final.get("draft_entropy") is not None:
            self.draft_entropy = final["draft_entropy"]

    def last(self, reply: Reply) -> None:
        """The reply that ends the answer (COMPLETION, END or ERROR): what it cost, and where it ran."""
        self.degraded = self.degraded or reply.degraded
        if reply.account is None:
            return
        try:
            self.account = Account.from_wire(reply.account)
        except (WireError, AttributeError) as exc:
            log.warning("unreadable account on a reply", request_id=reply.request_id, error=str(exc))
            return
        self.account_wire = reply.account
        answering = [call for call in self.account.calls if call.role not in ("aborted_draft", "wasted_speculation")]
        if answering and not self.deployment:
            self.deployment = answering[-1].deployment
            self.tier = self.tier or answering[-1].tier

    def failed(self, status: int, error: ApiError | dict | None) -> None:
        """An error answer: ours (an ApiError) or a router's (its OpenAI error body)."""
        self.status = status
        self.decision = self.decision or "error"
        if isinstance(error, ApiError):
            self.error = error.code or error.type
        elif isinstance(error, dict):
            detail = error.get("error") if isinstance(error.get("error"), dict) else {}
            self.error = str(detail.get("code") or detail.get("type") or "error")
        else:
            self.error = "error"


def cache_hit_account(completion: dict, heavyweight: Price | None) -> Account:
    """A cache hit called no upstream: it cost nothing, and saved what the heavyweight would have
    charged for the same prompt and answer (their tokens as the cached answer's usage counted them)."""
    usage = completion.get("usage") if isinstance(completion.get("usage"), dict) else {}
    prompt, answer = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    baseline = None if heavyweight is None else heavyweight.cost(prompt, answer)
    return Account(calls=(), cost_usd=0.0, baseline_usd=baseline)


def _account_wire(outcome: Outcome) -> dict | None:
    """The account as it came (no second serialisation on the request path), or made from the Account."""
    if outcome.account is None:
        return None
    return outcome.account_wire if outcome.account_wire is not None else outcome.account.to_wire()


def ledger_record(outcome: Outcome, *, request_id: str, arrived: float, latency_ms: float, key_id: str = "",
                  tenant: str = "", template_id: str = "", session_id: str = "", model: str = "",
                  stream: bool = False) -> LedgerRecord:
    """The record of one finished request (shared/messages.py LedgerRecord is the contract)."""
    return LedgerRecord(request_id=request_id, time=arrived, key_id=key_id, tenant=tenant, template_id=template_id,
                        session_id=session_id, model=model, stream=stream, status=outcome.status,
                        decision=outcome.decision, tier=outcome.tier, deployment=outcome.deployment,
                        account=_account_wire(outcome),
                        latency_ms=round(latency_ms, 3), ttft_ms=outcome.ttft_ms, draft_entropy=outcome.draft_entropy,
                        cache=outcome.cache, error=outcome.error, degraded=outcome.degraded)
