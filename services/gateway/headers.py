"""The routing headers on every answer. Pure."""

from __future__ import annotations

import time

from shared.messages import Reply, Tier


def routing_headers(request_id: str, started: float, decision: str, entropy: float | None = None,
                    speculation: str = "none", tier: str | None = None, reason: str | None = None) -> dict[str, str]:
    """X-Draft-Entropy is 0.000 when no draft was judged (forced tier, cache hit)."""
    headers = {
        "X-Request-ID": request_id,
        "X-Request-Duration-Ms": f"{(time.monotonic() - started) * 1000:.1f}",
        "X-Routing-Decision": decision,
        "X-Draft-Entropy": f"{entropy or 0.0:.3f}",
        "X-Speculation": speculation,
    }
    if tier:
        headers["X-Routing-Tier"] = tier
    if reason:
        headers["X-Escalation-Reason"] = reason
    return headers


PROGRESSIVE = "progressive"


def headers_for_head(request_id: str, started: float, head: Reply) -> dict[str, str]:
    """A progressive stream's headers leave before its decision, entropy and speculation are known:
    those come in the `draftgate` field of its last chunk instead."""
    headers = routing_headers(request_id, started, head.decision or "", head.draft_entropy,
                              head.speculation or "none", head.tier, head.reason)
    if head.decision == PROGRESSIVE:
        del headers["X-Draft-Entropy"], headers["X-Speculation"]
    if head.cost_usd is not None:
        headers["X-Cost-USD"] = f"{head.cost_usd:.8f}"
    if head.draft_risk is not None:  # the learned policy decided (absent on progressive heads, sent before it did)
        headers["X-Draft-Risk"] = f"{head.draft_risk:.3f}"
    if head.degraded:  # the heavyweight was full and the drafter answered (routing.degraded_mode: serve_draft)
        headers["X-Degraded"] = "true"
    return headers


def cache_hit_headers(request_id: str, started: float, cache_tier: str, similarity: float,
                      verified: str | None = None) -> dict[str, str]:
    """The cache holds accepted drafts only, so the tier behind every hit is the drafter.

    X-Cache-Verified names the checks a semantic hit passed; exact hits have none (the same
    normalised request needs no judge), so they carry no X-Cache-Verified.
    """
    headers = routing_headers(request_id, started, "cache_hit", tier=Tier.DRAFTER)
    headers.update({"X-Cache": cache_tier, "X-Cache-Similarity": f"{similarity:.4f}"})
    if verified:
        headers["X-Cache-Verified"] = verified
    return headers
