"""Which flow answers a request: one named deployment, a forced tier, progressive streaming, or the
buffered draft."""

from __future__ import annotations

import dataclasses
from functools import partial

from services.router.drafting import RoutingContext, fail_upstream, route_buffered, serve_tier
from services.router.progressive import route_progressive
from services.router.replies import ReplyWriter
from services.router.upstream import Tier as UpstreamTier
from services.router.upstreams.errors import UpstreamStatusError
from shared.messages import ChatRequest, Tier

PROGRESSIVE = "progressive"
FORCED = "forced"


async def answer(ctx: RoutingContext, request: ChatRequest, out: ReplyWriter) -> None:
    if request.deployment:
        await serve_deployment(ctx, request, out)
    elif request.tier == Tier.HEAVYWEIGHT:
        await serve_tier(ctx, ctx.heavyweight, request, out, partial(out.head, "escalate", None, "none", "heavyweight"))
    elif request.tier == Tier.DRAFTER:
        await serve_tier(ctx, ctx.drafter, request, out, partial(out.head, "accept", None, "none", "drafter"))
    elif request.body.get("stream") and ctx.routing.stream_mode == PROGRESSIVE:
        await route_progressive(ctx, request, out)
    else:
        await route_buffered(ctx, request, out)


async def serve_deployment(ctx: RoutingContext, request: ChatRequest, out: ReplyWriter) -> None:
    """The client named a deployment: that one alone answers (its tier's retries on it, no other
    deployment, no fallback), as a forced tier is served. The gateway checked the name against the
    same config; a router whose config lacks it answers 404 rather than guess."""
    tier = only_deployment(ctx, request.deployment)
    if tier is None:
        missing = f"The deployment `{request.deployment}` is not configured on this router."
        await fail_upstream(ctx, ctx.heavyweight, out, UpstreamStatusError(
            missing, status=404, retryable=False,
            body={"message": missing, "type": "invalid_request_error", "code": "model_not_found"}))
        return
    await serve_tier(ctx, tier, request, out, partial(out.head, FORCED, None, "none", tier.name))


def only_deployment(ctx: RoutingContext, name: str) -> UpstreamTier | None:
    """The tier that holds deployment `name`, narrowed to it (its state shared: breaker, in flight)."""
    for tier in (ctx.drafter, ctx.heavyweight):
        member = tier.pool.member(name) if tier.pool is not None else None
        if tier.pool is not None and member is not None:
            return dataclasses.replace(tier, model=member.target.model, pool=tier.pool.only(name),
                                       continuation=member.continuation, price=member.state.price)
    return None
