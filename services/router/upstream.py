"""One model tier: its deployment, its provider and the session it is called through, streamed as chunk dicts.

The flows (drafting, progressive, speculation, calibration) call a tier through `open_chunks`, which
goes through the lean transport (upstreams/transport.py) with the tier's provider: one pooled
aiohttp session, SSE read as bytes, every chunk checked once, so nothing past this module meets a
malformed one, and every failure one UpstreamError naming the tier and its model.

Sessions: the router process makes one session and hands it to every tier (`create_tier(...,
session=...)`, app.py closes it). A caller that passes none (the cache's drafter check, calibration,
bench, tests) gets a tier that makes its own session on first use, in the running event loop;
it closes it with `await tier.client.close()`, as before.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from services.router.assemble import assemble_completion, client_top_logprobs
from services.router.upstreams import provider_for
from services.router.upstreams.balance import Balancer, strategy
from services.router.upstreams.base import Provider, Target
from services.router.upstreams.breaker import BreakerPolicy
from services.router.upstreams.deployment import Deployment, Limits
from services.router.upstreams.errors import UpstreamProtocolError, UpstreamStreamError
from services.router.upstreams.hedge import HedgePolicy
from services.router.upstreams.openai import PROVIDER as OPENAI
from services.router.upstreams.pool import Member, Observer, Pool
from services.router.upstreams.ratelimit import RateLimiter
from services.router.upstreams.transport import MAX_LINE_BYTES, create_session, open_stream, read_chunks, sse_data
from shared.config import DeploymentConfig, UpstreamConfig, tier_deployments
from shared.pricing import Price

__all__ = ["MAX_LINE_BYTES", "Tier", "TierClient", "UpstreamProtocolError", "UpstreamStreamError", "complete",
           "create_tier", "open_chunks", "split_credentials", "sse_data", "stream_params"]

NEVER = 2**62  # breaker failures that cannot happen within any window

_GATEWAY_FIELDS = frozenset({"model", "messages", "stream", "stream_options", "n"})


class TierClient:
    """How a tier is reached: its provider, its deployment, and the session calls go through."""

    __slots__ = ("_owns", "_session", "provider", "target")

    def __init__(self, provider: Provider, target: Target, session: aiohttp.ClientSession | None = None) -> None:
        self.provider = provider
        self.target = target
        self._session = session
        self._owns = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session, or this tier's own, made on first use (in the running loop)."""
        if self._session is None:
            self._session = create_session()
        return self._session

    async def close(self) -> None:
        """Close the session if this tier made it; a shared one is its owner's to close."""
        if self._owns and self._session is not None:
            session, self._session = self._session, None
            await session.close()


@dataclass(frozen=True)
class Tier:
    name: str
    model: str  # the first deployment's (each call is sent with its deployment's own model)
    client: TierClient
    continuation: str = "instruction"  # how it continues a partly shown answer (continuation.py)
    price: Price | None = None  # None: unpriced, no cost is counted
    pool: Pool | None = None  # its deployments (upstreams/pool.py); None: the client's one target


def create_tier(name: str, config: UpstreamConfig, env: Mapping[str, str],
                session: aiohttp.ClientSession | None = None, limiter: RateLimiter | None = None,
                observe: Observer | None = None) -> Tier:
    """The tier `config` describes: a pool of its deployments (the single-endpoint form is one named
    after the tier); with `session`, calls share it; with `limiter`, rpm / tpm hold across routers."""
    deployments = tier_deployments(name, config)
    # A lone deployment with nowhere to fall back to is never cut off: an open breaker would only
    # turn its answers (and the errors the client should see) into 503s.
    alone = len(deployments) == 1 and not config.fallbacks
    breaker = BreakerPolicy(NEVER if alone else config.breaker_failures, config.breaker_window_s,
                            config.breaker_cooldown_s)
    members = [_member(name, deployment, config, env, breaker) for deployment in deployments]
    pool = Pool(name, members, Balancer([member.state for member in members], strategy(config.balancing)),
                retries=config.retries, backoff_s=config.retry_backoff_ms / 1000,
                hedge=HedgePolicy.from_config(config.hedge_after_ms, config.hedge_percentile),
                limiter=limiter, observe=observe)
    first = members[0]
    return Tier(name=name, model=first.target.model, client=TierClient(first.provider, first.target, session),
                continuation=first.continuation, price=first.state.price, pool=pool)


def link_fallbacks(configs: Mapping[str, UpstreamConfig], tiers: Mapping[str, Tier]) -> None:
    """Each tier's `fallbacks` as pools: a tier name is that tier's pool, a deployment name a pool of
    that one deployment (sharing its state: its breaker and in-flight count are the same)."""
    for name, config in configs.items():
        pool = tiers[name].pool
        if pool is None:
            continue
        for fallback in config.fallbacks:
            if fallback in tiers and tiers[fallback].pool is not None:
                pool.fallbacks.append(tiers[fallback].pool)  # type: ignore[arg-type]
                continue
            owner = next(tier.pool for tier in tiers.values() if tier.pool and tier.pool.member(fallback))
            pool.fallbacks.append(owner.only(fallback))


def _member(tier: str, deployment: DeploymentConfig, config: UpstreamConfig, env: Mapping[str, str],
            breaker: BreakerPolicy) -> Member:
    """One deployment: where and how it is called, and this router's state of it."""
    api_key = env.get(deployment.api_key_env, "") if deployment.api_key_env else ""
    base_url, basic_auth = split_credentials(deployment.base_url or "")
    # Credentials in the URL (a server behind a basic-auth proxy) travel as HTTP Basic auth.
    headers = {"Authorization": basic_auth} if basic_auth else {}
    provider = deployment.provider or config.provider
    target = Target(name=deployment.name, provider=provider, base_url=base_url, model=deployment.model or "",
                    api_key=api_key, timeout_s=deployment.timeout_s or config.timeout_s, headers=headers, tier=tier)
    state = Deployment(deployment.name, weight=deployment.weight, max_concurrent=deployment.max_concurrent,
                       limits=Limits(deployment.rpm, deployment.tpm), price=deployment.price,
                       breaker_policy=breaker)
    return Member(state, target, provider_for(provider), deployment.continuation or config.continuation)


def split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without its user:password part, and that part as a Basic Authorization value."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    user_pass = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return urlunsplit(parts._replace(netloc=netloc)), "Basic " + base64.b64encode(user_pass.encode()).decode()


def stream_params(body: dict[str, Any], model: str, min_top_logprobs: int | None = None) -> dict[str, Any]:
    """The request body for this tier: the client's, always streamed with usage.

    Everything the gateway does not own passes through untouched (tools, response_format,
    seed, vendor fields); a provider translates what it has an equivalent for. A drafter call
    asks for at least `min_top_logprobs` alternatives per token.
    """
    params = {key: value for key, value in body.items() if key not in _GATEWAY_FIELDS}
    params.update(model=model, messages=body["messages"], stream=True, stream_options={"include_usage": True})
    if min_top_logprobs is not None:
        params["logprobs"] = True
        params["top_logprobs"] = max(min_top_logprobs, int(params.get("top_logprobs") or 0))
    return params


def open_chunks(tier: Tier, params: dict[str, Any]) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]:
    """Open the tier's stream (`async with open_chunks(tier, params) as chunks`): a deployment of its
    pool, retried and fallen back before the first chunk (upstreams/pool.py); leaving the block
    closes the upstream connection at once. Raises UpstreamError."""
    client = tier.client
    if tier.pool is not None:
        return tier.pool.open(client.session, params)
    return open_stream(client.session, client.provider, client.target, params)


async def complete(tier: Tier, body: dict[str, Any], min_top_logprobs: int | None = None) -> dict[str, Any]:
    """A whole chat.completion dict (the SDK model's shape): the tier's stream read to its end and
    folded, for callers that want one answer (the cache's drafter check). Raises UpstreamError."""
    async with open_chunks(tier, stream_params(body, tier.model, min_top_logprobs)) as chunks:
        collected = [chunk async for chunk in chunks]
    top = min_top_logprobs if min_top_logprobs is not None else client_top_logprobs(body)
    return assemble_completion(collected, top)


def _chunks(blocks: AsyncIterator[bytes], tier: Tier) -> AsyncIterator[dict[str, Any]]:
    """An OpenAI-compatible body read in `blocks` as the tier's checked chunks (the transport's
    reading without the HTTP; the unit tests feed it bytes)."""
    return read_chunks(blocks, OPENAI.decoder(), (tier.name, tier.name, tier.model))
