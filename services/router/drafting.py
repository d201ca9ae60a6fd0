"""One request's flow, buffered: draft, judge every token, then accept the whole draft or escalate;
and the steps progressive.py shares (judging a chunk, speculating, caching, serving a tier, the
cluster queue, degraded mode, and what the answer cost).

What an answer cost travels with it: every upstream call is recorded in a `Spend` (costs.py) with
the deployment that served it and its role, and `RoutingContext.settle` prices it into the
`Account` that rides on the last reply (the COMPLETION of a plain answer, the END of a stream, the
ERROR), counting it in the metrics once.

Degraded mode (routing.degraded_mode): when a draft escalates and the heavyweight is full (no slot
of its cluster queue within queue_timeout_s, every deployment's breaker open or busy, or every one at
its rate limit), `serve_draft` serves the draft anyway, marked degraded (Reply.degraded: the gateway
sends X-Degraded: true) and counted (draftgate_degraded_total{tier,reason}); `reject` answers 503
(heavyweight_unavailable, Retry-After) or, rate-limited, 429 with its wait. A draft that had ended is
served as it is. One cut off by the escalation was never shown in a buffered answer, so the drafter
answers again from the start, unjudged (the aborted draft is paid for, as aborted_draft); a
progressive stream's drafter goes on from exactly what the client was shown (progressive.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
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
from services.router.audit.sampling import AuditSampler, audit_publications
from services.router.costs import (
    ABORTED_DRAFT,
    ANSWER,
    DRAFT,
    SPECULATION,
    WASTED_SPECULATION,
    Served,
    Spend,
    account,
    by_tier,
    estimate_prompt_tokens,
    served_by,
    unknown_deployment,
)
from services.router.entropy import Decision, EntropyWindow, token_entropy_bits
from services.router.failures import UPSTREAM_ERRORS, upstream_error_reply
from services.router.metrics import RouterMetrics
from services.router.policy import DraftRisk, RiskRuntime, decide
from services.router.queue import ClusterQueue, TierFull
from services.router.replies import ReplyWriter
from services.router.speculation import Speculation, SpeculationBudget
from services.router.upstream import Tier, open_chunks, stream_params
from services.router.upstreams.errors import UpstreamError, UpstreamStatusError
from shared import bus
from shared.config import RoutingConfig
from shared.errors import error_body
from shared.keys import CACHE_WRITE_STREAM
from shared.messages import Account, CacheWrite, ChatRequest, encode

log = structlog.get_logger(__name__)

DEGRADED = "degraded"  # the decision of an answer the drafter served because the heavyweight was full
SERVE_DRAFT = "serve_draft"
# Why a draft could not be served degraded: there is none worth serving.
NO_DRAFT_REASONS = frozenset({"drafter_error", "drafter_full"})

Chunks = AsyncIterator[dict[str, Any]]


@dataclass
class RoutingContext:
    """Everything one router process needs to answer requests."""

    drafter: Tier
    heavyweight: Tier
    routing: RoutingConfig
    metrics: RouterMetrics
    budget: SpeculationBudget
    cache_write_maxlen: int
    warned_models: set[str] = field(default_factory=set)
    risk: RiskRuntime | None = None  # routing.policy: learned
    audit: AuditSampler | None = None  # samples accepted drafts for the audit (services/router/audit)
    queue: ClusterQueue | None = None  # the tiers' cluster_max_concurrent (queue.py); None: none bounded

    def __post_init__(self) -> None:
        # Read at scrape time: the budget itself stays the one count.
        self.metrics.speculations_active.set_function(lambda: self.budget.active)

    def settle(self, spend: Spend, answered: bool = True) -> Account:
        """Price what an answer cost and count it in the metrics: once per answer. The baseline (and
        the saving) only for an answer the client got (`answered`)."""
        result = account(spend, self.heavyweight.price if answered else None)
        for tier, usd in by_tier(result).items():
            self.metrics.cost.labels(tier).inc(usd)
        for call in result.calls:
            if call.cost_usd is not None:
                self.metrics.deployment_cost.labels(call.tier, call.deployment).inc(call.cost_usd)
        if result.baseline_usd is not None and result.cost_usd is not None:
            self.metrics.cost_baseline.inc(result.baseline_usd)
            self.metrics.cost_saved.inc(result.baseline_usd - result.cost_usd)
        return result


def open_tier(ctx: RoutingContext, tier: Tier, params: dict[str, Any],
              wait: bool = True) -> AbstractAsyncContextManager[Chunks]:
    """open_chunks with a slot of the tier's cluster queue held while the stream is read (waiting up
    to its queue_timeout_s for one when `wait`; TierFull when none came). An unbounded tier: open_chunks."""
    if ctx.queue is None or not ctx.queue.bounded(tier.name):
        return open_chunks(tier, params)
    return _queued(ctx.queue, tier, params, wait)


@asynccontextmanager
async def _queued(queue: ClusterQueue, tier: Tier, params: dict[str, Any], wait: bool) -> AsyncIterator[Chunks]:
    lease = await queue.acquire(tier.name, wait)
    try:
        async with open_chunks(tier, params) as chunks:
            yield chunks
    finally:
        await queue.release(lease)


@dataclass
class Draft:
    chunks: list[dict[str, Any]]
    window: EntropyWindow
    escalate_reason: str | None = None
    speculation: Speculation | None = None
    risk: DraftRisk | None = None  # the learned policy's view of it
    risk_value: float | None = None  # its risk when the router decided
    served: Served | None = None  # the drafter deployment that wrote it


async def route_buffered(ctx: RoutingContext, request: ChatRequest, out: ReplyWriter) -> None:
    spend = new_spend(request)
    draft = await _draft(ctx, request.body)
    draft.risk_value, draft.escalate_reason = decide(draft.risk, draft.escalate_reason)
    ctx.metrics.draft_entropy.observe(draft.window.metric)
    speculation = draft.speculation
    try:
        if draft.escalate_reason is None:
            state = "none"
            assert draft.served is not None  # judged tokens came from a stream
            spend.answer_tokens = spend.add(draft.served, DRAFT, draft.chunks)
            if speculation is not None:
                await drop_speculation(ctx, speculation, spend)
                state = "cancelled"
            speculation = None
            await _accept(ctx, request, out, draft, state, spend)
            return
        ctx.metrics.escalation_reasons.labels(draft.escalate_reason).inc()
        if speculation is not None and not await speculation.opened():
            # It failed before its first chunk (its slot refused, its deployments down): escalate
            # as if there had been none (the queue's wait, degraded mode, or the error).
            await speculation.cancel()
            speculation = None
        if speculation is not None:
            ctx.metrics.speculations_used.inc()
            ctx.metrics.speculation_saved.observe(time.monotonic() - speculation.started)
            head = partial(out.head, "escalate", draft.window.metric, "used", "heavyweight", draft.escalate_reason,
                           risk=draft.risk_value)
            aborted(spend, draft)
            await _deliver(ctx, ctx.heavyweight, speculation.follow(), request, out, head, spend, SPECULATION,
                           speculation.served or unknown_deployment(ctx.heavyweight))
        else:
            await _escalate(ctx, request, out, draft, spend)
    finally:
        if speculation is not None:
            await speculation.cancel()
        if draft.risk is not None:
            await draft.risk.close()


def aborted(spend: Spend, draft: Draft) -> None:
    """The draft escalated away: paid for all the same."""
    if draft.chunks and draft.served is not None:
        spend.add(draft.served, ABORTED_DRAFT, draft.chunks)


async def drop_speculation(ctx: RoutingContext, speculation: Speculation, spend: Spend) -> None:
    """Cancel a speculation the answer does not need; what it produced is paid for."""
    wasted = await speculation.cancel()
    if speculation.failed_early:
        return  # refused before anything was sent (no slot), or failed before its first chunk: nothing to pay
    spend.add_tokens(speculation.served or unknown_deployment(ctx.heavyweight), WASTED_SPECULATION, wasted)
    ctx.metrics.speculation_wasted_tokens.inc(wasted)
    ctx.metrics.speculations_cancelled.inc()


async def _escalate(ctx: RoutingContext, request: ChatRequest, out: ReplyWriter, draft: Draft,
                    spend: Spend) -> None:
    heavyweight = ctx.heavyweight
    head = partial(out.head, "escalate", draft.window.metric, "none", "heavyweight", draft.escalate_reason,
                   risk=draft.risk_value)
    try:
        async with open_tier(ctx, heavyweight, stream_params(request.body, heavyweight.model)) as chunks:
            aborted(spend, draft)
            await _deliver(ctx, heavyweight, chunks, request, out, head, spend, ANSWER,
                           served_by(heavyweight, chunks))
            return
    except UPSTREAM_ERRORS as exc:
        reason = full_reason(exc)
        if reason is None or not can_degrade(ctx, draft.escalate_reason, draft.served):
            if reason is not None:
                ctx.metrics.degraded_rejected.labels(heavyweight.name, reason).inc()
            aborted(spend, draft)
            await fail_upstream(ctx, heavyweight, out, exc, spend)
            return
    await _serve_degraded(ctx, request, out, draft, spend, reason)


def full_reason(exc: BaseException) -> str | None:
    """Why a tier counts as full from the error that refused its call, or None: not full, failed.
    queue_timeout: no slot of its cluster queue in time; unavailable: no deployment could take the
    call (every breaker open, every one busy); rate_limited: every deployment at its rate limit, or
    the upstream's own 429 after the retries."""
    if isinstance(exc, TierFull):
        return "queue_timeout"
    if isinstance(exc, UpstreamStatusError) and exc.status == 429:
        return "rate_limited"
    if isinstance(exc, UpstreamStatusError) and exc.status == 503 and not exc.deployment:
        return "unavailable"  # the pool's refusal (no deployment was called)
    return None


def can_degrade(ctx: RoutingContext, reason: str | None, served: Served | None) -> bool:
    return ctx.routing.degraded_mode == SERVE_DRAFT and served is not None and reason not in NO_DRAFT_REASONS


def ended(chunks: list[dict[str, Any]]) -> bool:
    """The draft ran to its finish (escalated at its end, by the learned policy): whole as it is."""
    return any(choice.get("finish_reason") for chunk in chunks for choice in chunk.get("choices") or ())


async def _serve_degraded(ctx: RoutingContext, request: ChatRequest, out: ReplyWriter, draft: Draft,
                          spend: Spend, reason: str) -> None:
    """The heavyweight is full: the draft is the answer (see the module docstring)."""
    ctx.metrics.degraded.labels(ctx.heavyweight.name, reason).inc()
    log.warning("heavyweight full, serving the draft", reason=reason, escalation=draft.escalate_reason)
    head = partial(out.head, DEGRADED, draft.window.metric, "none", ctx.drafter.name, draft.escalate_reason,
                   risk=draft.risk_value, degraded=True)
    if ended(draft.chunks):
        assert draft.served is not None
        spend.answer_tokens = spend.add(draft.served, DRAFT, draft.chunks)
        result = ctx.settle(spend)
        await _send_whole(request, out, draft.chunks, head(cost_usd=result.cost_usd), result, degraded=True)
        ctx.metrics.decisions.labels(DEGRADED, ctx.drafter.name).inc()
        return
    aborted(spend, draft)
    await serve_tier(ctx, ctx.drafter, request, out, head, spend, role=DRAFT, decision=DEGRADED, degraded=True)


async def _draft(ctx: RoutingContext, body: dict[str, Any]) -> Draft:
    """Stream the drafter and judge each token; stops reading (closing the connection) on escalation."""
    routing = ctx.routing
    draft = Draft(chunks=[], window=new_window(routing),
                  risk=ctx.risk.start(body.get("messages") or []) if ctx.risk is not None else None)
    params = stream_params(body, ctx.drafter.model, routing.top_logprobs)
    try:
        async with open_tier(ctx, ctx.drafter, params) as chunks:
            draft.served = served_by(ctx.drafter, chunks)
            async for chunk in chunks:
                draft.chunks.append(chunk)
                if draft.risk is not None:
                    draft.risk.add(chunk)
                verdict = judge(chunk, draft.window, routing.top_logprobs)
                if verdict is None:
                    warn_no_logprobs(ctx, chunk)
                    draft.escalate_reason = "no_logprobs"
                    break
                if verdict is Decision.ESCALATE:
                    draft.escalate_reason = draft.window.escalation
                    break
                if verdict is Decision.SPECULATE and draft.speculation is None:
                    draft.speculation = speculate(ctx, stream_params(body, ctx.heavyweight.model))
    except TierFull:
        log.warning("drafter full, escalating")
        draft.escalate_reason = "drafter_full"
    except UPSTREAM_ERRORS as exc:
        ctx.metrics.upstream_errors.labels("drafter").inc()
        log.warning("drafter failed, escalating", error=str(exc))
        draft.escalate_reason = "drafter_error"
    except BaseException:
        if draft.speculation is not None:
            await draft.speculation.cancel()
        if draft.risk is not None:
            await draft.risk.close()
        raise
    ctx.metrics.upstream_tokens.labels("drafter").inc(sum(content_tokens(c) for c in draft.chunks))
    if draft.escalate_reason is None and draft.window.tokens == 0:
        draft.escalate_reason = "unjudged"
    return draft


def new_window(routing: RoutingConfig) -> EntropyWindow:
    return EntropyWindow(routing.entropy_threshold, routing.window, routing.early_exit_tokens,
                         routing.speculation_threshold)


def judge(chunk: dict[str, Any], window: EntropyWindow, top_k: int) -> Decision | None:
    """Feed the chunk's tokens to the window. None: content arrived without any log-probs.

    Some servers send more than k alternatives (llama.cpp adds the sampled token): the k
    most likely are the distribution the threshold was calibrated on."""
    decision = Decision.CONTINUE
    for choice in chunk.get("choices") or ():
        logprobs = choice.get("logprobs")
        entries = logprobs.get("content") if logprobs else None
        if entries is None:
            if (choice.get("delta") or {}).get("content"):
                return None
            continue
        for entry in entries:
            # Chunks are checked where they are read (upstream.py): every logprob is a number or
            # null (-inf as C++ servers write it), which carries no mass.
            alternatives = [lp for alt in entry.get("top_logprobs") or () if (lp := alt["logprob"]) is not None]
            if len(alternatives) > top_k:
                alternatives = sorted(alternatives, reverse=True)[:top_k]
            bits = token_entropy_bits(alternatives)
            if bits is None:
                continue
            verdict = window.add(bits)
            if verdict is Decision.ESCALATE:
                return verdict
            if verdict is Decision.SPECULATE:
                decision = verdict
    return decision


def warn_no_logprobs(ctx: RoutingContext, chunk: dict[str, Any]) -> None:
    model = chunk.get("model") or ctx.drafter.model
    if model not in ctx.warned_models:
        ctx.warned_models.add(model)
        log.warning("drafter returned no log-probs; every request will escalate", model=model)


def speculate(ctx: RoutingContext, params: dict[str, Any]) -> Speculation | None:
    """A heavyweight call started early, within the speculation budget; with a cluster queue it takes
    a slot only if one is free now (it never waits: failing, the escalation waits instead)."""
    if not ctx.budget.try_acquire():
        ctx.metrics.speculations_skipped.inc()
        return None
    ctx.metrics.speculations_started.inc()
    return Speculation(ctx.heavyweight, params, ctx.budget, partial(open_tier, ctx, wait=False))


def new_spend(request: ChatRequest) -> Spend:
    return Spend(estimate_prompt_tokens(request.body.get("messages") or ()))


async def _accept(ctx: RoutingContext, request: ChatRequest, out: ReplyWriter, draft: Draft, state: str,
                  spend: Spend) -> None:
    top = client_top_logprobs(request.body)
    # The cache keeps exactly what a plain client asking this gets: log-probs trimmed to its
    # top_logprobs when it asked for them (the cache key includes both), none otherwise. Folded
    # before shape_chunk, which trims the same entries in place.
    cached = assemble_completion(draft.chunks, top) if request.cache_store else None
    cache_writes = [] if cached is None else [cache_write(ctx, request, cached)]
    cache_writes += audit_publications(ctx.audit, request, draft.chunks, ctx.drafter.model, draft.window.metric)
    result = ctx.settle(spend)
    head = out.head("accept", draft.window.metric, state, "drafter", cost_usd=result.cost_usd, risk=draft.risk_value)
    await _send_whole(request, out, draft.chunks, head, result, also=cache_writes, completion=cached)
    ctx.metrics.decisions.labels("accept", "drafter").inc()


async def _send_whole(request: ChatRequest, out: ReplyWriter, chunks: list[dict[str, Any]], head: bytes,
                      result: Account, degraded: bool = False, also: list[bus.Publication] | None = None,
                      completion: dict[str, Any] | None = None) -> None:
    """A draft held whole, as the client asked for it: its chunks, or one completion."""
    body = request.body
    top = client_top_logprobs(body)
    if body.get("stream"):
        usage = wants_usage(body)
        payloads = [out.chunk(shape_chunk(c, top)) for c in chunks if usage or not is_usage_chunk(c)]
        await out.finish(head, *payloads, also=also or (), account=result, degraded=degraded)
    else:
        whole = completion if completion is not None else assemble_completion(chunks, top)
        await out.finish(head, out.completion(whole, result, degraded), also=also or ())


def cache_write(ctx: RoutingContext, request: ChatRequest, completion: dict[str, Any]) -> bus.Publication:
    message = CacheWrite(request_id=request.request_id, body=request.body, completion=completion,
                         tenant=request.tenant, created=time.time())
    return bus.Publication(CACHE_WRITE_STREAM, encode(message), ctx.cache_write_maxlen)


async def serve_tier(ctx: RoutingContext, tier: Tier, request: ChatRequest, out: ReplyWriter,
                     head: Callable[..., bytes], spend: Spend | None = None, role: str = ANSWER,
                     decision: str | None = None, degraded: bool = False) -> None:
    """The tier answers the request as it is (a forced tier, a named deployment, a degraded redraft)."""
    spend = spend or new_spend(request)
    try:
        async with open_tier(ctx, tier, stream_params(request.body, tier.model)) as chunks:
            await _deliver(ctx, tier, chunks, request, out, head, spend, role, served_by(tier, chunks),
                           decision, degraded)
    except UPSTREAM_ERRORS as exc:
        await fail_upstream(ctx, tier, out, exc, spend)


async def _deliver(ctx: RoutingContext, tier: Tier, chunks: Chunks, request: ChatRequest, out: ReplyWriter,
                   head: Callable[..., bytes], spend: Spend, role: str, served: Served, decision: str | None = None,
                   degraded: bool = False) -> None:
    """Pass a tier's chunks on as they arrive (or as one completion); the head goes with the first.

    The head is made only when it is sent: replies are numbered as they are made, and a failure
    before the first chunk must reach the gateway as the first reply (a plain error status), not
    after a number that never arrived. A plain answer's head carries its cost; whatever the call
    received is charged, also when it failed or the client left."""
    body = request.body
    top = client_top_logprobs(body)
    usage = wants_usage(body)
    headed = settled = False
    received: list[dict[str, Any]] = []
    try:
        try:
            async for chunk in chunks:
                received.append(chunk)
                if body.get("stream") and (usage or not is_usage_chunk(chunk)):
                    first = [] if headed else [head()]
                    headed = True
                    await out.send(*first, out.chunk(shape_chunk(chunk, top)))
        except UPSTREAM_ERRORS as exc:
            if received:
                spend.add(served, role, received)
            settled = True
            await fail_upstream(ctx, tier, out, exc, spend)
            return
        spend.answer_tokens = spend.add(served, role, received)
        settled = True
        result = ctx.settle(spend)
        last = [] if headed else [head(cost_usd=result.cost_usd)]
        if body.get("stream"):
            await out.finish(*last, account=result, degraded=degraded)
        else:
            await out.finish(*last, out.completion(assemble_completion(received, top), result, degraded))
    finally:
        ctx.metrics.upstream_tokens.labels(tier.name).inc(sum(content_tokens(c) for c in received))
        if not settled:  # the client left, or the bus failed: what was spent is still counted
            if received:
                spend.add(served, role, received)
            ctx.settle(spend, answered=False)
    label = decision or ("accept" if tier.name == ctx.drafter.name else "escalate")
    ctx.metrics.decisions.labels(label, tier.name).inc()


async def fail_upstream(ctx: RoutingContext, tier: Tier, out: ReplyWriter, exc: BaseException,
                        spend: Spend | None = None) -> None:
    """End the answer with the error the client gets for `exc`, and what the calls before it cost."""
    ctx.metrics.upstream_errors.labels(tier.name).inc()
    log.warning("upstream failed", tier=tier.name, model=tier.model, error=str(exc))
    status, error = error_reply(tier, exc)
    # A rate limit's wait (ours in Redis, or the upstream's Retry-After) reaches the client as Retry-After.
    wait = exc.retry_after_s if status in (429, 503) and isinstance(exc, UpstreamError) else None
    if wait is None and full_reason(exc) is not None:
        wait = 1.0  # a full tier: worth trying again shortly
    result = ctx.settle(spend or Spend(0), answered=False)
    await out.finish(out.error(status, error, wait, result))


def error_reply(tier: Tier, exc: BaseException) -> tuple[int, dict[str, Any]]:
    """A full tier (no queue slot in time; no deployment able to take the call) is 503
    `<tier>_unavailable`; every other failure is mapped as failures.py says."""
    reason = full_reason(exc)
    if reason in ("queue_timeout", "unavailable"):
        why = "is at its concurrency limit" if reason == "queue_timeout" else "has no deployment able to answer"
        return 503, error_body(f"The {tier.name} model {why}; try again shortly.", "server_error",
                               code=f"{tier.name}_unavailable")
    return upstream_error_reply(tier.name, exc, tier.model)
