"""The learned routing policy in the router: a draft is accepted only when its risk is at or below the
policy's threshold (services/router/risk.py scores it).

The entropy window still judges every token and aborts early, as with the entropy policy; the risk
decides when the draft has ended. Its signals are kept up to date chunk by chunk (signals.TraceStats),
so asking for the risk after any chunk costs the same: progressive streams ask after every chunk,
and hold what they would show while the partial draft's trace-only risk is above the threshold.

The prompt's embedding is fetched from the embedder service (cache.embedder_url, as the cache asks
it) while the drafter writes, so it adds no latency: when the draft ends, the with_embedding variant
scores it if the embedding is there, else the trace-only variant does, and the fetch is dropped. An
embedder that is down, slow or serving another model only ever costs that variant.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from services.cache.embeddings import EmbedderClient
from services.router.risk import TRACE_ONLY, WITH_EMBEDDING, PolicyError, Risk, RiskPolicy, load_policy
from services.router.signals import TraceStats, prompt_signals, prompt_text, tokens_of
from shared.config import Config, ConfigError

log = structlog.get_logger(__name__)

LEARNED = "learned"
REPO = Path(__file__).resolve().parents[2]
RISK_REASON = "risk"  # X-Escalation-Reason of a draft the policy sent to the heavyweight

Embed = Callable[[str], Awaitable[Sequence[float]]]


def load_router_policy(config: Config) -> RiskPolicy | None:
    """The policy the router decides with (None: the entropy policy). A file that is missing, malformed or
    fitted at more alternatives per token than the router asks for is a ConfigError naming the file."""
    routing = config.routing
    if routing.policy != LEARNED or routing.risk_model is None:
        return None
    path = resolve(routing.risk_model)
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        raise ConfigError(f"routing.risk_model: {exc}") from None
    if policy.top_k > routing.top_logprobs:
        raise ConfigError(f"routing.risk_model: {path} was fitted on {policy.top_k} alternatives per token and "
                          f"routing.top_logprobs asks the drafter for {routing.top_logprobs}: raise it to "
                          f"{policy.top_k}, or refit with `calibrate fit --top-k {routing.top_logprobs}`")
    return policy


def resolve(path: str) -> Path:
    """A relative path from the working directory, else from the repository (the shipped policies)."""
    given = Path(path)
    if given.is_absolute() or given.exists():
        return given
    shipped = REPO / given
    return shipped if shipped.exists() else given


@dataclass
class RiskRuntime:
    """The router's policy and its way to the prompt's embedding (None: trace-only always)."""

    policy: RiskPolicy
    embed: Embed | None = None
    _warned: bool = False

    def start(self, messages: Sequence[dict[str, Any]]) -> DraftRisk:
        """A draft's risk; its prompt's embedding starts being fetched now."""
        return DraftRisk(self, list(messages))

    def embedder_failed(self, exc: BaseException) -> None:
        """Logged once per failure streak: an embedder that is down would otherwise log every request."""
        if not self._warned:
            self._warned = True
            log.warning("embedder unavailable; the risk policy uses its trace-only variant", error=str(exc))

    def embedder_answered(self) -> None:
        if self._warned:
            self._warned = False
            log.info("embedder back; the risk policy uses the prompt's embedding again")


class DraftRisk:
    """One draft's risk, kept as its chunks arrive."""

    def __init__(self, runtime: RiskRuntime, messages: list[dict[str, Any]]) -> None:
        self.runtime = runtime
        self.policy = runtime.policy
        self.stats = TraceStats()
        self.prompt = prompt_signals(messages)
        self.last: Risk | None = None
        self._embedding: asyncio.Task[Sequence[float]] | None = None
        text = prompt_text(messages)
        if runtime.embed is not None and self.policy.with_embedding is not None and text.strip():
            self._embedding = asyncio.create_task(runtime.embed(text))

    def add(self, chunk: dict[str, Any]) -> None:
        for token in tokens_of(chunk, self.policy.top_k):
            self.stats.add(token)

    def partial(self) -> Risk:
        """The trace-only risk of the draft so far (progressive showing waits while it is too high)."""
        return self.policy.risk(self._signals())

    def final(self) -> Risk:
        """The risk at the moment of decision: with the embedding if it has arrived, else trace-only."""
        self.last = self.policy.risk(self._signals(), self._embedding_if_ready())
        return self.last

    async def close(self) -> None:
        """Drop the embedding fetch if it is still running (its failure, if it failed, is consumed)."""
        task, self._embedding = self._embedding, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task

    def _signals(self) -> dict[str, float]:
        return {**self.stats.signals(), **self.prompt}

    def _embedding_if_ready(self) -> Sequence[float] | None:
        task = self._embedding
        if task is None or not task.done() or task.cancelled():
            return None
        exc = task.exception()
        if exc is not None:
            self.runtime.embedder_failed(exc)
            return None
        self.runtime.embedder_answered()
        return task.result()


def variant_in_use(policy: RiskPolicy, embedder_model: str) -> str:
    """Which variant the router can use given the embedder it talks to: a policy fitted on another
    embedding model's vectors would read nonsense from these."""
    variant = policy.with_embedding
    if variant is None or variant.embedding is None:
        return TRACE_ONLY
    fitted = variant.embedding.model
    if fitted is not None and fitted.lower() != embedder_model.lower():
        return TRACE_ONLY
    return WITH_EMBEDDING


@contextlib.asynccontextmanager
async def open_risk_runtime(config: Config, policy: RiskPolicy | None) -> AsyncIterator[RiskRuntime | None]:
    """The policy with a client for the embedder service while the router runs (None: entropy policy)."""
    if policy is None:
        yield None
        return
    variant = variant_in_use(policy, config.embedder.model)
    if variant != WITH_EMBEDDING or not config.cache.embedder_url:
        if policy.with_embedding is not None:
            log.warning("the risk policy's with_embedding variant is off: no embedder, or its model is not the one "
                        "the policy was fitted on", embedder=config.embedder.model)
        yield RiskRuntime(policy)
        return
    async with aiohttp.ClientSession() as session:
        client = EmbedderClient(session, config.cache.embedder_url, config.embedder.model,
                                config.cache.embedder_timeout_s)
        yield RiskRuntime(policy, _first_vector(client))


def _first_vector(client: EmbedderClient) -> Embed:
    async def embed(text: str) -> Sequence[float]:
        return (await client.embed([text]))[0]

    return embed


def decide(risk: DraftRisk | None, reason: str | None) -> tuple[float | None, str | None]:
    """The risk at the moment of decision (None: entropy policy) and the escalation reason it leaves: a
    draft the entropy window let through escalates when its risk is above the threshold."""
    if risk is None:
        return None, reason
    final = risk.final()
    if reason is None and not final.accept:
        reason = RISK_REASON
    log.debug("draft risk", risk=round(final.value, 4), variant=final.variant, threshold=final.threshold)
    return final.value, reason
