"""What an audit concludes, and the records it leaves. Pure.

Two answers to the same request agree when their embeddings' cosine is at or above
`audit.agree_similarity`. With `audit.judge: true`, a pair below it (or one the embedder could not
compare) goes to the calibration LLM judge, which scores the draft against the heavyweight's answer
as the reference: acceptable (3 or more of 5) is agreement. The heavyweight is taken to be right: the
audit measures how often an accepted draft differs from what the heavyweight would have said.

Each decided audit becomes a calibration record pair (the draft's Trace and its Grade, see
calibration/traces.py and grade.py), so `calibrate fit --from-audit` reads production traffic as it
reads the shipped dataset, and a short verdict record for the cluster-wide rates and the API.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.router.audit.store import AGREE, DECIDED, DISAGREE
from services.router.calibration.grade import Grade
from services.router.calibration.judge import ACCEPTABLE
from services.router.calibration.traces import Trace, Usage
from services.router.signals import TokenTrace
from shared.messages import AuditLabel, AuditSample

SKIPPED_BUDGET, ERROR, UNDECIDED, SKIPPED_EMPTY = "skipped_budget", "error", "undecided", "skipped_empty"
SKIPPED_BUSY = "skipped_busy"  # the heavyweight's cluster queue had no free slot: live traffic goes first
VERDICTS = (AGREE, DISAGREE, SKIPPED_BUDGET, SKIPPED_BUSY, ERROR, UNDECIDED, SKIPPED_EMPTY)
SIMILARITY, JUDGE = "similarity", "judge"
SPLIT = "audit"  # the calibration split audited traces are filed under
PREVIEW_CHARS = 160
RUBRIC = ("The answer must agree with this reference answer from a stronger model on every fact, number, "
          "name and conclusion the request asks for (wording, length and style may differ; extra correct "
          "detail is fine). Reference answer:\n{reference}")


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity; 0.0 when either vector is zero."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def by_similarity(similarity: float, agree_similarity: float) -> str:
    return AGREE if similarity >= agree_similarity else DISAGREE


def needs_judge(similarity: float | None, agree_similarity: float, judge_on: bool) -> bool:
    """The judge is asked only when configured and the embeddings did not already say "agree"."""
    return judge_on and (similarity is None or similarity < agree_similarity)


def by_judge(score: int) -> str:
    return AGREE if score >= ACCEPTABLE else DISAGREE


@dataclass(frozen=True)
class Audit:
    """One audited draft's conclusion."""

    verdict: str
    method: str = ""  # similarity | judge, for decided verdicts
    similarity: float | None = None
    judge_score: int | None = None
    heavy_text: str = ""
    heavy_usage: dict[str, int] | None = None
    heavy_model: str = ""
    heavy_latency_s: float = 0.0
    cost_usd: float = 0.0
    detail: str = ""

    @property
    def decided(self) -> bool:
        return self.verdict in DECIDED


def client_id(sample: AuditSample) -> str:
    """The request as the client, the ledger and feedback name it (its X-Request-ID)."""
    return sample.client_request_id or sample.request_id


def draft_trace(sample: AuditSample) -> Trace:
    usage = Usage.from_json(sample.usage)
    return Trace(id=sample.request_id, tier="drafter", model=sample.model, category=sample.category, split=SPLIT,
                 text=sample.text, tokens=tuple(TokenTrace.from_json(t) for t in sample.tokens), top_k=sample.top_k,
                 usage=usage, finish_reason=sample.finish_reason)


def heavy_trace(sample: AuditSample, audit: Audit) -> Trace:
    return Trace(id=sample.request_id, tier="heavyweight", model=audit.heavy_model, category=sample.category,
                 split=SPLIT, text=audit.heavy_text, usage=Usage.from_json(audit.heavy_usage),
                 latency_s=audit.heavy_latency_s)


def grade(sample: AuditSample, audit: Audit) -> Grade:
    return Grade(sample.request_id, "drafter", audit.verdict == AGREE, f"audit_{audit.method}", audit.judge_score,
                 audit.detail)


def label(sample: AuditSample, audit: Audit, now: float) -> AuditLabel:
    """The calibration record of a decided audit (AUDIT_LABELLED_STREAM)."""
    max_tokens = sample.body.get("max_completion_tokens") or sample.body.get("max_tokens")
    return AuditLabel(request_id=client_id(sample), time=now, tenant=sample.tenant, category=sample.category,
                      verdict=audit.verdict, method=audit.method, similarity=audit.similarity,
                      judge_score=audit.judge_score, messages=list(sample.body.get("messages") or ()),
                      max_tokens=max_tokens if isinstance(max_tokens, int) else None,
                      trace=draft_trace(sample).to_json(), heavy_trace=heavy_trace(sample, audit).to_json(),
                      grade=grade(sample, audit).to_json())


def verdict_record(sample: AuditSample, audit: Audit, now: float) -> dict[str, Any]:
    """What the recent-verdicts lists keep (and GET /v1/system/audit shows) of one decided audit."""
    return {"request_id": client_id(sample), "time": round(now, 3), "tenant": sample.tenant,
            "category": sample.category, "verdict": audit.verdict, "method": audit.method,
            "similarity": None if audit.similarity is None else round(audit.similarity, 4),
            "judge_score": audit.judge_score,
            "draft_entropy": None if sample.draft_entropy is None else round(sample.draft_entropy, 4),
            "cost_usd": round(audit.cost_usd, 8), "draft": sample.text[:PREVIEW_CHARS],
            "heavyweight": audit.heavy_text[:PREVIEW_CHARS]}
