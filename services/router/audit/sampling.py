"""Which accepted drafts the audit sees, and the sample each one becomes.

Called from the accept paths (drafting.py, progressive.py) as the answer is finished: the sample is a
`bus.Publication` that rides in the same Redis round trip as the last replies, and a side write that
fails is returned, never raised, so the audit can neither delay nor fail an answer. Building the sample
never raises either: a malformed draft is logged and not sampled.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import Counter

from services.router.signals import tokens_of
from shared import bus
from shared.config import AuditConfig
from shared.keys import AUDIT_STREAM
from shared.messages import AuditSample, ChatRequest, encode

log = structlog.get_logger(__name__)

MAX_CATEGORY_CHARS = 64


def sample_rate(config: AuditConfig, tenant: str) -> float:
    """The share of this tenant's accepted drafts that are audited: 0 for an opted-out tenant, its
    override when it has one, else audit.sample_rate."""
    if tenant in config.opt_out_tenants:
        return 0.0
    for override in config.tenant_sample_rates:
        if override.tenant == tenant:
            return override.rate
    return config.sample_rate


def wants_audit(config: AuditConfig, request: ChatRequest, draw: float) -> bool:
    """`draw` is uniform in [0, 1). Never a request the client marked no-store (auditable False)."""
    return request.auditable and draw < sample_rate(config, request.tenant)


def category_of(body: dict[str, Any]) -> str:
    """The request's metadata.category, when the client sent one (OpenAI's metadata: string values)."""
    metadata = body.get("metadata")
    category = metadata.get("category") if isinstance(metadata, dict) else None
    return category[:MAX_CATEGORY_CHARS] if isinstance(category, str) else ""


@dataclass
class DraftTrace:
    """A sampled draft, chunk by chunk, read before anything trims its log-probs for the client
    (a progressive stream shapes each chunk as it is shown)."""

    top_k: int
    model: str
    text: list[str] = field(default_factory=list)
    tokens: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] | None = None
    finish_reason: str | None = None
    broken: bool = False  # a chunk could not be read: the draft is not sampled

    def add(self, chunk: dict[str, Any]) -> None:
        try:
            self.model = chunk.get("model") or self.model
            self.tokens.extend(token.to_json() for token in tokens_of(chunk, self.top_k))
            choices = chunk.get("choices") or ()
            if choices:
                content = (choices[0].get("delta") or {}).get("content")
                if isinstance(content, str):
                    self.text.append(content)
                self.finish_reason = choices[0].get("finish_reason") or self.finish_reason
            reported = chunk.get("usage")
            if isinstance(reported, dict):
                self.usage = {"prompt_tokens": int(reported.get("prompt_tokens") or 0),
                              "completion_tokens": int(reported.get("completion_tokens") or 0)}
        except Exception:  # the answer goes out whatever happens here
            log.exception("could not trace the draft for the audit")
            self.broken = True


def build_sample(request: ChatRequest, trace: DraftTrace, draft_entropy: float | None, now: float) -> AuditSample:
    """The accepted draft as the auditor needs it: the request, the text, and each token's top-k
    log-probs exactly as `calibrate collect` records them (signals.tokens_of)."""
    return AuditSample(request_id=request.request_id, body=request.body, text="".join(trace.text),
                       tokens=trace.tokens, top_k=trace.top_k, model=trace.model, tenant=request.tenant,
                       category=category_of(request.body), usage=trace.usage, finish_reason=trace.finish_reason,
                       draft_entropy=draft_entropy, time=now, client_request_id=request.client_request_id)


@dataclass
class AuditSampler:
    """The router's sampling hook: drawn when a draft starts (`start`), published when it is accepted."""

    config: AuditConfig
    top_k: int  # routing.top_logprobs: what the drafter was asked for
    sampled: Counter | None = None  # draftgate_audit_sampled_total
    draw: Callable[[], float] = field(default_factory=lambda: random.Random().random)

    def start(self, request: ChatRequest, model: str) -> DraftTrace | None:
        """A trace to feed the draft's chunks to when this request is drawn, else None."""
        return DraftTrace(self.top_k, model) if wants_audit(self.config, request, self.draw()) else None

    def publications(self, request: ChatRequest, trace: DraftTrace | None,
                     draft_entropy: float | None) -> list[bus.Publication]:
        if trace is None or trace.broken:
            return []
        try:
            payload = encode(build_sample(request, trace, draft_entropy, time.time()))
        except Exception:  # the answer goes out whatever happens here
            log.exception("could not sample the draft for the audit")
            return []
        if self.sampled is not None:
            self.sampled.inc()
        return [bus.Publication(AUDIT_STREAM, payload, self.config.stream_maxlen)]


def audit_start(sampler: AuditSampler | None, request: ChatRequest, model: str) -> DraftTrace | None:
    """A streamed flow's draw, before its first chunk (None: the audit is off or the draft not drawn)."""
    return None if sampler is None else sampler.start(request, model)


def audit_finish(sampler: AuditSampler | None, request: ChatRequest, trace: DraftTrace | None,
                 draft_entropy: float | None) -> list[bus.Publication]:
    """What an accept path sends along with its last replies: the sample of a drawn draft, or nothing."""
    return [] if sampler is None else sampler.publications(request, trace, draft_entropy)


def audit_publications(sampler: AuditSampler | None, request: ChatRequest, chunks: Sequence[dict[str, Any]],
                       model: str, draft_entropy: float | None) -> list[bus.Publication]:
    """The buffered accept path's one call, with the whole draft's chunks, untouched yet."""
    trace = audit_start(sampler, request, model)
    if trace is None:
        return []
    for chunk in chunks:
        trace.add(chunk)
    return audit_finish(sampler, request, trace, draft_entropy)
