"""One request's flow, buffered: draft, judge every token, then accept the whole draft or escalate;
and the steps progressive.py shares (judging a chunk, speculating, caching, serving a tier)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
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
from services.router.costs import Spend, bill, estimate_prompt_tokens
from services.router.entropy import Decision, EntropyWindow, token_entropy_bits
from services.router.failures import UPSTREAM_ERRORS, upstream_error_reply
from services.router.metrics import RouterMetrics
from services.router.policy import DraftRisk, RiskRuntime, decide
from services.router.replies import ReplyWriter
from services.router.speculation import Speculation, SpeculationBudget
from services.router.upstream import Tier, open_chunks, stream_params
from services.router.upstreams.errors import UpstreamError
from shared import bus
from shared.config import RoutingConfig
from shared.keys import CACHE_WRITE_STREAM
from shared.messages import CacheWrite, ChatRequest, encode

log = structlog.get_logger(__name__)


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

    def __post_init__(self) -> None:
        # Read at scrape time: the budget itself stays the one count.
        self.metrics.speculations_active.set_function(lambda: self.budget.active)

    def charge(self, spend: Spend) -> float | None:
        """Count what an answer cost; its total in USD, None when a tier involved is unpriced."""
        result = bill(spend, {"drafter": self.drafter.price, "heavyweight": self.heavyweight.price})
        if result is None:
            return None
        for tier, usd in result.by_tier.items():
            self.metrics.cost.labels(tier).inc(usd)
        self.metrics.cost_baseline.inc(result.baseline)
        self.metrics.cost_saved.inc(result.saved)
        return result.total


@dataclass
class Draft:
    chunks: list[dict[str, Any]]
    window: EntropyWindow
    escalate_reason: str | None = None
    speculation: Speculation | None = None
    risk: DraftRisk | None = None  # the learned policy's view of it
    risk_value: float | None = None  # its risk when the router decided


async def route_buffered(ctx: RoutingContext, request: ChatRequest, out: ReplyWriter) -> None:
    spend = new_spend(request)
    draft = await _draft(ctx, request.body)
    draft.risk_value, draft.escalate_reason = decide(draft.risk, draft.escalate_reason)
    ctx.metrics.draft_entropy.observe(draft.window.metric)
    drafted = spend.add("drafter", draft.chunks) if draft.chunks else 0
    speculation = draft.speculation
    try:
        if draft.escalate_reason is None:
            state = "none"
            if speculation is not None:
                wasted = await speculation.cancel()
                spend.add_tokens("heavyweight", wasted)
                ctx.metrics.speculation_wasted_tokens.inc(wasted)
                ctx.metrics.speculations_cancelled.inc()
                state = "cancelled"
            speculation = None
            spend.answer_tokens = drafted
            await _accept(ctx, request, out, draft, state, ctx.charge(spend))
            return
        ctx.metrics.escalation_reasons.labels(draft.escalate_reason).inc()
        if speculation is not None:
            ctx.metrics.speculations_used.inc()
            ctx.metrics.speculation_saved.observe(time.monotonic() - speculation.started)
            head = partial(out.head, "escalate", draft.window.metric, "used", "heavyweight", draft.escalate_reason,
                           risk=draft.risk_value)
            await _deliver(ctx, ctx.heavyweight, speculation.follow(), request, out, head, spend)
        else:
            await serve_tier(ctx, ctx.heavyweight, request, out,
                             partial(out.head, "escalate", draft.window.metric, "none", "heavyweight",
                                     draft.escalate_reason, risk=draft.risk_value), spend)
    finally:
        if speculation is not None:
            await speculation.cancel()
        if draft.risk is not None:
            await draft.risk.close()


async def _draft(ctx: RoutingContext, body: dict[str, Any]) -> Draft:
    """Stream the drafter and judge each token; stops reading (closing the connection) on escalation."""
    routing = ctx.routing
    draft = Draft(chunks=[], window=new_window(routing),
                  risk=ctx.risk.start(body.get("messages") or []) if ctx.risk is not None else None)
    params = stream_params(body, ctx.drafter.model, routing.top_logprobs)
    try:
        async with open_chunks(ctx.drafter, params) as chunks:
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
    if not ctx.budget.try_acquire():
        ctx.metrics.speculations_skipped.inc()
        return None
    ctx.metrics.speculations_started.inc()
    return Speculation(ctx.heavyweight, params, ctx.budget)


def new_spend(request: ChatRequest) -> Spend:
    return Spend(estimate_prompt_tokens(request.body.get("messages") or ()))


async def _accept(ctx: RoutingContext, request: ChatRequest, out: ReplyWriter, draft: Draft, state: str,
                  cost_usd: float | None) -> None:
    body = request.body
    top = client_top_logprobs(body)
    # The cache keeps exactly what a plain client asking this gets: log-probs trimmed to its
    # top_logprobs when it asked for them (the cache key includes both), none otherwise. Folded
    # before shape_chunk, which trims the same entries in place.
    cached = assemble_completion(draft.chunks, top) if request.cache_store else None
    cache_writes = [] if cached is None else [cache_write(ctx, request, cached)]
    head = out.head("accept", draft.window.metric, state, "drafter", cost_usd=cost_usd, risk=draft.risk_value)
    if body.get("stream"):
        usage = wants_usage(body)
        payloads = [out.chunk(shape_chunk(c, top)) for c in draft.chunks if usage or not is_usage_chunk(c)]
        await out.finish(head, *payloads, also=cache_writes)
    else:
        completion = cached if cached is not None else assemble_completion(draft.chunks, top)
        await out.finish(head, out.completion(completion), also=cache_writes)
    ctx.metrics.decisions.labels("accept", "drafter").inc()


def cache_write(ctx: RoutingContext, request: ChatRequest, completion: dict[str, Any]) -> bus.Publication:
    message = CacheWrite(request_id=request.request_id, body=request.body, completion=completion,
                         tenant=request.tenant, created=time.time())
    return bus.Publication(CACHE_WRITE_STREAM, encode(message), ctx.cache_write_maxlen)


async def serve_tier(ctx: RoutingContext, tier: Tier, request: ChatRequest, out: ReplyWriter,
                     head: Callable[..., bytes], spend: Spend | None = None) -> None:
    try:
        async with open_chunks(tier, stream_params(request.body, tier.model)) as chunks:
            await _deliver(ctx, tier, chunks, request, out, head, spend or new_spend(request))
    except UPSTREAM_ERRORS as exc:
        await fail_upstream(ctx, tier, out, exc)


async def _deliver(ctx: RoutingContext, tier: Tier, chunks: AsyncIterator[dict[str, Any]], request: ChatRequest,
                   out: ReplyWriter, head: Callable[..., bytes], spend: Spend) -> None:
    """Pass a tier's chunks on as they arrive (or as one completion); the head goes with the first.

    The head is made only when it is sent: replies are numbered as they are made, and a failure
    before the first chunk must reach the gateway as the first reply (a plain error status), not
    after a number that never arrived. A plain answer's head carries its cost; whatever the call
    received is charged, also when it failed or the client left."""
    body = request.body
    top = client_top_logprobs(body)
    usage = wants_usage(body)
    headed = charged = False
    received: list[dict[str, Any]] = []
    try:
        async for chunk in chunks:
            received.append(chunk)
            if body.get("stream") and (usage or not is_usage_chunk(chunk)):
                first = [] if headed else [head()]
                headed = True
                await out.send(*first, out.chunk(shape_chunk(chunk, top)))
        spend.answer_tokens = spend.add(tier.name, received)
        charged = True
        cost = ctx.charge(spend)
        last = [] if headed else [head(cost_usd=cost)]
        if not body.get("stream"):
            last.append(out.completion(assemble_completion(received, top)))
        await out.finish(*last)
    except UPSTREAM_ERRORS as exc:
        await fail_upstream(ctx, tier, out, exc)
        return
    finally:
        ctx.metrics.upstream_tokens.labels(tier.name).inc(sum(content_tokens(c) for c in received))
        if not charged and received:
            spend.add(tier.name, received)
            ctx.charge(spend)
    ctx.metrics.decisions.labels("accept" if tier.name == ctx.drafter.name else "escalate", tier.name).inc()


async def fail_upstream(ctx: RoutingContext, tier: Tier, out: ReplyWriter, exc: BaseException) -> None:
    ctx.metrics.upstream_errors.labels(tier.name).inc()
    log.warning("upstream failed", tier=tier.name, model=tier.model, error=str(exc))
    status, error = upstream_error_reply(tier.name, exc, tier.model)
    # A rate limit's wait (ours in Redis, or the upstream's Retry-After) reaches the client as Retry-After.
    wait = exc.retry_after_s if status in (429, 503) and isinstance(exc, UpstreamError) else None
    await out.finish(out.error(status, error, wait))
