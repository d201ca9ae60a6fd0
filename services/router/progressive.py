"""Progressive streaming: the client reads a confident draft while the drafter writes it, and
when the draft turns uncertain after part of it was shown, the heavyweight continues from exactly
that text in the same stream.

The headers go out with the first shown token, before the decision is final, so they say
`progressive`; the decision (accept, continued, or escalate when nothing was shown) travels in
the last chunk before [DONE] as the extra field `draftgate`, which OpenAI clients ignore. What
may be shown and when is release.py's; how the heavyweight is asked to go on is continuation.py's;
the repair of an instruction-style seam is seam.py's.

When the heavyweight is full at the escalation (routing.degraded_mode: serve_draft, drafting.py), the
drafter itself goes on from exactly the shown text, across the same seam, and the decision is
`degraded` (X-Degraded: true as well when nothing had been shown, so the headers had not gone yet).

Showing pauses while the draft is rising: the window's mean, or the mean of the held-back tokens,
above the speculation threshold (0.7 x the threshold when speculation is off). One uncertain token
among calm ones does not pause it (the hold-back keeps that token unshown until calm tokens follow
it); a run of them does, before they are shown. Inside the early-exit region any token above the
speculation threshold starts the heavyweight early, as in buffered mode.

With the learned policy (routing.policy: learned, policy.py), showing also waits while the trace-only
risk of the draft so far is above the policy's threshold, and a draft that ends with its risk above it
escalates like any other: continued from the shown text, or answered whole when nothing was shown.

Speculation is aimed at the continuation: a speculative heavyweight starts when the mean rises,
from the text shown at that moment, and nothing more is shown while it runs, so on escalation it
continues exactly what the client has. A window_mean escalation needs the mean to climb from the
speculation threshold to the threshold, several tokens, so the heavyweight always has that head
start. Once the draft has been calm for half a window, the speculation is cancelled (it continues
text the client will not stop at) and showing resumes; a new rise aims a new one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog

from services.router.assemble import (
    assemble_completion,
    client_top_logprobs,
    content_tokens,
    is_usage_chunk,
    shape_chunk,
    wants_usage,
)
from services.router.audit.sampling import audit_finish, audit_start
from services.router.continuation import INSTRUCTION, continuation_params
from services.router.costs import (
    ABORTED_DRAFT,
    ANSWER,
    CONTINUATION,
    DRAFT,
    SPECULATION,
    Served,
    served_by,
    unknown_deployment,
)
from services.router.drafting import (
    DEGRADED,
    RoutingContext,
    cache_write,
    can_degrade,
    drop_speculation,
    ended,
    fail_upstream,
    full_reason,
    judge,
    new_spend,
    new_window,
    open_tier,
    speculate,
    warn_no_logprobs,
)
from services.router.entropy import Decision
from services.router.failures import UPSTREAM_ERRORS
from services.router.policy import decide
from services.router.queue import TierFull
from services.router.release import Release
from services.router.replies import ReplyWriter
from services.router.seam import Seam
from services.router.speculation import Speculation
from services.router.upstream import Tier, stream_params
from shared.messages import DECISION_FIELD as FIELD
from shared.messages import ChatRequest

log = structlog.get_logger(__name__)

PROGRESSIVE = "progressive"  # the X-Routing-Decision of a stream shown before its decision
ACCEPT, CONTINUED, ESCALATE = "accept", "continued", "escalate"
PAUSE_FRACTION = 0.7  # with speculation off, showing pauses above this share of the threshold


@dataclass(frozen=True)
class Outcome:
    """The final decision of a progressive stream."""

    decision: str
    tier: str
    seam_tokens: int | None  # continued: the drafter tokens the client got; escalate: 0; accept: None
    draft_entropy: float
    reason: str | None
    speculation: str
    risk: float | None = None  # the learned policy's, when it decided (routing.policy: learned)

    def field(self) -> dict[str, Any]:
        out = {"decision": self.decision, "tier": self.tier, "seam_tokens": self.seam_tokens,
               "draft_entropy": round(self.draft_entropy, 4), "reason": self.reason, "speculation": self.speculation}
        if self.risk is not None:
            out["risk"] = round(self.risk, 4)
        return out


def ends_answer(chunk: dict[str, Any]) -> bool:
    """A finish or usage chunk: the last chunk the client gets is one of these."""
    return is_usage_chunk(chunk) or any(choice.get("finish_reason") for choice in chunk.get("choices") or ())


async def route_progressive(ctx: RoutingContext, request: ChatRequest, out: ReplyWriter) -> None:
    flow = _Flow(ctx, request, out)
    try:
        await flow.draft()
        flow.risk_value, flow.reason = decide(flow.risk, flow.reason)
        ctx.metrics.draft_entropy.observe(flow.window.metric)
        if flow.reason is None:
            await flow.accept()
        else:
            await flow.escalate()
    finally:
        if flow.speculation is not None:
            await flow.speculation.cancel()
        if flow.risk is not None:
            await flow.risk.close()


class _Flow:
    """One progressive request: its draft, what was shown of it, its speculation."""

    def __init__(self, ctx: RoutingContext, request: ChatRequest, out: ReplyWriter) -> None:
        self.ctx, self.request, self.out = ctx, request, out
        self.body = request.body
        self.top = client_top_logprobs(self.body)
        self.usage = wants_usage(self.body)
        self.window = new_window(ctx.routing)
        self.release = Release(ctx.routing.early_exit_tokens, ctx.routing.stream_holdback_tokens)
        self.reason: str | None = None  # why the draft escalates; None: accepted
        self.speculation: Speculation | None = None
        self.aimed_at = 0  # shown tokens the running speculation continues from
        self.speculated = "none"
        self.calm = 0  # calm tokens in a row
        spec = ctx.routing.speculation_threshold
        self.pause_bits = spec if spec is not None else PAUSE_FRACTION * ctx.routing.entropy_threshold
        self.headed = False
        self.spend = new_spend(request)
        self.served: Served | None = None  # the drafter deployment that wrote the draft
        self.charged = False  # the draft's call is in the spend
        self.degraded = False  # the heavyweight was full: the drafter answers (routing.degraded_mode)
        self.risk = ctx.risk.start(self.body.get("messages") or []) if ctx.risk is not None else None
        self.risk_value: float | None = None  # the learned policy's risk when it decided
        self.audited = audit_start(ctx.audit, request, ctx.drafter.model)  # drawn for the audit: its trace

    async def draft(self) -> None:
        """Stream the drafter, judge each token, show what may be shown; stops reading on escalation."""
        routing = self.ctx.routing
        params = stream_params(self.body, self.ctx.drafter.model, routing.top_logprobs)
        try:
            async with open_tier(self.ctx, self.ctx.drafter, params) as chunks:
                self.served = served_by(self.ctx.drafter, chunks)
                async for chunk in chunks:
                    self.release.add(chunk, content_tokens(chunk))
                    if self.audited is not None:  # before showing trims its log-probs
                        self.audited.add(chunk)
                    if self.risk is not None:
                        self.risk.add(chunk)
                    verdict = judge(chunk, self.window, routing.top_logprobs)
                    if verdict is None:
                        warn_no_logprobs(self.ctx, chunk)
                        self.reason = "no_logprobs"
                        break
                    if verdict is Decision.ESCALATE:
                        self.reason = self.window.escalation
                        break
                    await self._step(speculate=verdict is Decision.SPECULATE)
        except TierFull:
            log.warning("drafter full, escalating")
            self.reason = "drafter_full"
        except UPSTREAM_ERRORS as exc:
            self.ctx.metrics.upstream_errors.labels("drafter").inc()
            log.warning("drafter failed, escalating", error=str(exc))
            self.reason = "drafter_error"
        self.ctx.metrics.upstream_tokens.labels("drafter").inc(sum(content_tokens(c) for c in self.release.chunks))
        if self.reason is None and self.window.tokens == 0:
            self.reason = "unjudged"

    async def _step(self, speculate: bool) -> None:
        routing = self.ctx.routing
        rising = max(self.window.mean, self.window.recent_mean(routing.stream_holdback_tokens)) > self.pause_bits
        early = self.window.tokens <= routing.early_exit_tokens
        if speculate and (rising or early) and self.speculation is None:
            self._speculate()
        if rising:
            self.calm = 0
            return
        self.calm += 1
        if self.speculation is not None and self.speculation.failed_early:
            await self._drop_speculation()  # no slot for it, or its deployments down: showing need not wait
        if self.speculation is not None and self.calm < max(routing.window // 2, 1):
            return  # the speculation may still be needed: show nothing it would not continue from
        if self.risk is not None and not self.risk.partial().accept:
            return  # the learned policy: the draft so far looks wrong (trace-only), show no more of it yet
        ready = self.release.ready(self.window.tokens, calm=True)
        if not ready:
            return
        if self.speculation is not None:  # what it continues from is no longer what the client has
            await self._drop_speculation()
        await self.out.send(*self._head(PROGRESSIVE, "drafter"), *self._chunks(ready))

    def _speculate(self) -> None:
        heavyweight = self.ctx.heavyweight
        params = continuation_params(self.body, heavyweight.model, self.release.shown_text, heavyweight.continuation,
                                     self.release.shown_tokens)
        self.speculation = speculate(self.ctx, params)
        self.aimed_at = self.release.shown_tokens

    async def _drop_speculation(self) -> None:
        assert self.speculation is not None
        await drop_speculation(self.ctx, self.speculation, self.spend)
        self.speculation = None
        self.speculated = "cancelled"

    def _charge_draft(self, role: str) -> int:
        """The draft's call into the spend, once, in its role; its completion tokens."""
        if self.charged or self.served is None or not self.release.chunks:
            return 0
        self.charged = True
        return self.spend.add(self.served, role, self.release.chunks)

    def _head(self, decision: str, tier: str, cost_usd: float | None = None) -> list[bytes]:
        """The head, once: with the first reply that goes out."""
        if self.headed:
            return []
        self.headed = True
        if decision == PROGRESSIVE:
            return [self.out.head(PROGRESSIVE, None, "none", tier)]
        return [self.out.head(decision, self.window.metric, self.speculated, tier, self.reason, cost_usd,
                              risk=self.risk_value, degraded=self.degraded)]

    def _chunks(self, chunks: list[dict[str, Any]]) -> list[bytes]:
        return [self.out.chunk(shape_chunk(c, self.top)) for c in chunks if self.usage or not is_usage_chunk(c)]

    async def accept(self, decision: str = ACCEPT) -> None:
        """The draft is the answer: what was not shown of it goes out. Degraded (the heavyweight was
        full and the draft had ended), it is neither cached nor audited."""
        if self.speculation is not None:
            await self._drop_speculation()
        rest = [c for c in self.release.rest() if self.usage or not is_usage_chunk(c)]
        # Assembled before the last chunk gets the decision field (shaping is the same either way).
        cached = (assemble_completion(self.release.chunks, self.top)
                  if self.request.cache_store and decision == ACCEPT else None)
        outcome = self._outcome(decision, "drafter", None)
        if rest:
            rest[-1][FIELD] = outcome.field()
        also = [] if cached is None else [cache_write(self.ctx, self.request, cached)]
        if decision == ACCEPT:
            also += audit_finish(self.ctx.audit, self.request, self.audited, self.window.metric)
        self.spend.answer_tokens = self._charge_draft(DRAFT)
        result = self.ctx.settle(self.spend)
        await self.out.finish(*self._head(decision, "drafter", result.cost_usd), *self._chunks(rest), also=also,
                              account=result, degraded=self.degraded)
        self._record(outcome)

    async def escalate(self) -> None:
        assert self.reason is not None
        metrics, heavyweight = self.ctx.metrics, self.ctx.heavyweight
        metrics.escalation_reasons.labels(self.reason).inc()
        shown = self.release.shown_tokens
        if self.speculation is not None and self.aimed_at != shown:
            await self._drop_speculation()  # never happens as showing pauses while one runs; cheap to be sure
        if self.speculation is not None and not await self.speculation.opened():
            # It failed before its first chunk (no free slot, its deployments down): escalate without it.
            await self.speculation.cancel()
            self.speculation = None
        if self.speculation is not None:
            metrics.speculations_used.inc()
            metrics.speculation_saved.observe(time.monotonic() - self.speculation.started)
            self.speculated = "used"
            self._charge_draft(ABORTED_DRAFT)
            await self._continue(self.speculation.follow(), heavyweight, SPECULATION,
                                 self.speculation.served or unknown_deployment(heavyweight))
            return
        params = continuation_params(self.body, heavyweight.model, self.release.shown_text,
                                     heavyweight.continuation, self.release.shown_tokens)
        try:
            async with open_tier(self.ctx, heavyweight, params) as chunks:
                self._charge_draft(ABORTED_DRAFT)
                await self._continue(chunks, heavyweight, CONTINUATION if shown else ANSWER,
                                     served_by(heavyweight, chunks))
                return
        except UPSTREAM_ERRORS as exc:  # _continue answers its own failures: this one is the opening's
            full = full_reason(exc)
            if full is None or not can_degrade(self.ctx, self.reason, self.served):
                if full is not None:
                    metrics.degraded_rejected.labels(heavyweight.name, full).inc()
                self._charge_draft(ABORTED_DRAFT)
                await fail_upstream(self.ctx, heavyweight, self.out, exc, self.spend)
                return
        await self._degrade(full)

    async def _degrade(self, reason: str) -> None:
        """The heavyweight is full: the draft is served anyway. A draft that ended goes out whole; one
        cut off by the escalation is continued by the drafter from exactly what the client was shown
        (with nothing shown, the drafter answers again from the start)."""
        ctx, drafter = self.ctx, self.ctx.drafter
        ctx.metrics.degraded.labels(ctx.heavyweight.name, reason).inc()
        log.warning("heavyweight full, serving the draft", reason=reason, escalation=self.reason)
        self.degraded = True
        if ended(self.release.chunks):
            await self.accept(DEGRADED)
            return
        shown = self.release.shown_tokens
        params = continuation_params(self.body, drafter.model, self.release.shown_text, drafter.continuation, shown)
        try:
            async with open_tier(ctx, drafter, params) as chunks:
                self._charge_draft(DRAFT if shown else ABORTED_DRAFT)
                await self._continue(chunks, drafter, CONTINUATION if shown else DRAFT, served_by(drafter, chunks),
                                     DEGRADED)
                return
        except UPSTREAM_ERRORS as exc:
            self._charge_draft(DRAFT if shown else ABORTED_DRAFT)
            await fail_upstream(ctx, drafter, self.out, exc, self.spend)

    async def _continue(self, chunks: AsyncIterator[dict[str, Any]], tier: Tier, role: str, served: Served,
                        decision: str | None = None) -> None:
        """Pass the tier's chunks on after what was shown, as one answer; the finish and usage chunks
        wait for the end, where the last one takes the decision field. A failure of the stream ends
        the answer with its error (what was received is paid for)."""
        shown = self.release.shown_tokens
        decision = decision or (CONTINUED if shown else ESCALATE)
        first = self.release.chunks[0] if shown else None
        seam = (Seam(self.release.shown_text, self.release.next_text[:1].isspace(),
                     restatements=tier.continuation == INSTRUCTION) if shown else None)
        last: list[dict[str, Any]] = []
        received: list[dict[str, Any]] = []
        usage: dict[str, Any] | None = None  # the tier's own, before it counts the shown tokens too
        settled = False
        try:
            try:
                async for chunk in chunks:
                    received.append(chunk)
                    if chunk.get("usage"):
                        usage = dict(chunk["usage"])
                    if first is not None:
                        _join(chunk, first, shown)
                    now = [c for c in (seam.take(chunk) if seam else [chunk]) if not _held(c, last)]
                    if now:
                        await self.out.send(*self._head(decision, tier.name), *self._chunks(now))
            except UPSTREAM_ERRORS as exc:
                if received:
                    self.spend.add(served, role, received, usage, own_prompt=not shown)
                settled = True
                await fail_upstream(self.ctx, tier, self.out, exc, self.spend)
                return
            for chunk in seam.flush() if seam else ():
                last.append(chunk)
            outcome = self._outcome(decision, tier.name, shown)
            visible = [c for c in last if self.usage or not is_usage_chunk(c)]
            if visible:
                visible[-1][FIELD] = outcome.field()
            self.spend.answer_tokens = shown + self.spend.add(served, role, received, usage, own_prompt=not shown)
            settled = True
            result = self.ctx.settle(self.spend)
            await self.out.finish(*self._head(decision, tier.name, result.cost_usd), *self._chunks(last),
                                  account=result, degraded=self.degraded)
        finally:
            self.ctx.metrics.upstream_tokens.labels(tier.name).inc(sum(content_tokens(c) for c in received))
            if not settled:  # the client left, or the bus failed: what was spent is still counted
                if received:
                    self.spend.add(served, role, received, usage, own_prompt=not shown)
                self.ctx.settle(self.spend, answered=False)
        self._record(outcome)

    def _outcome(self, decision: str, tier: str, seam_tokens: int | None) -> Outcome:
        return Outcome(decision, tier, seam_tokens, self.window.metric, self.reason, self.speculated, self.risk_value)

    def _record(self, outcome: Outcome) -> None:
        """Metrics and the request log line."""
        self.ctx.metrics.decisions.labels(outcome.decision, outcome.tier).inc()
        if outcome.decision == CONTINUED:
            self.ctx.metrics.seam_tokens.observe(outcome.seam_tokens or 0)
        log.info("answered", progressive=True, **outcome.field())


def _held(chunk: dict[str, Any], last: list[dict[str, Any]]) -> bool:
    """Hold the chunk for the end if it ends the answer, or something before it was held."""
    if last or ends_answer(chunk):
        last.append(chunk)
        return True
    return False


def _join(chunk: dict[str, Any], first: dict[str, Any], shown_tokens: int) -> None:
    """A continuation chunk as part of the drafter's answer: its completion id and time, no second
    role, and usage that counts the shown drafter tokens among the completion tokens."""
    for key in ("id", "created"):
        if key in first:
            chunk[key] = first[key]
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if delta:
            delta.pop("role", None)
    usage = chunk.get("usage")
    if usage:
        usage["completion_tokens"] = usage.get("completion_tokens", 0) + shown_tokens
        usage["total_tokens"] = usage.get("total_tokens", 0) + shown_tokens
