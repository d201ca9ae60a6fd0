"""Which flow answers a request: a forced tier, progressive streaming, or the buffered draft."""

from __future__ import annotations

from functools import partial

from services.router.drafting import RoutingContext, route_buffered, serve_tier
from services.router.progressive import route_progressive
from services.router.replies import ReplyWriter
from shared.messages import ChatRequest, Tier

PROGRESSIVE = "progressive"


async def answer(ctx: RoutingContext, request: ChatRequest, out: ReplyWriter) -> None:
    if request.tier == Tier.HEAVYWEIGHT:
        await serve_tier(ctx, ctx.heavyweight, request, out, partial(out.head, "escalate", None, "none", "heavyweight"))
    elif request.tier == Tier.DRAFTER:
        await serve_tier(ctx, ctx.drafter, request, out, partial(out.head, "accept", None, "none", "drafter"))
    elif request.body.get("stream") and ctx.routing.stream_mode == PROGRESSIVE:
        await route_progressive(ctx, request, out)
    else:
        await route_buffered(ctx, request, out)
