"""The auditor: a member of the AUDIT_GROUP consumer group running inside each router process.

It lives in the router because it calls the heavyweight exactly as the router does: through the same
pool, with its breakers, retries, shared rate limits and cluster queue, so audits are limited with the
real traffic rather than beside it, and auditors scale with the routers. Each sample (sampling.py) is
audited in its own task, at most `audit.max_concurrent` per router:

1. reserve the estimated cost in today's cluster budget (budget.py); no room: `skipped_budget`;
2. re-ask the heavyweight the same request (calibration/stream.py's stream_answer: the router's own
   upstream code), holding a slot of its cluster queue (tiers' cluster_max_concurrent) when it has one,
   taken only if free at once: the audit yields to live traffic (`skipped_busy` when the tier is full);
3. compare: the cosine of both answers' embeddings through the embedder service, and with
   `audit.judge` the calibration judge when they are not similar enough (verdicts.py);
4. record the verdict, the windows and the labelled trace in Redis (store.py) and ack the sample.

A sample is acked once recorded; if the router dies first, another auditor reclaims it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.cache.embeddings import EmbedderClient, EmbedderUnavailable
from services.router.audit import store
from services.router.audit.budget import Budget
from services.router.audit.metrics import AuditMetrics
from services.router.audit.verdicts import (
    ERROR,
    JUDGE,
    RUBRIC,
    SIMILARITY,
    SKIPPED_BUDGET,
    SKIPPED_BUSY,
    SKIPPED_EMPTY,
    UNDECIDED,
    Audit,
    by_judge,
    by_similarity,
    cosine,
    label,
    needs_judge,
    verdict_record,
)
from services.router.calibration.judge import MAX_TOKENS as JUDGE_MAX_TOKENS
from services.router.calibration.judge import PROMPT as JUDGE_PROMPT
from services.router.calibration.judge import NoScore, judge
from services.router.calibration.stream import Answer, stream_answer
from services.router.costs import estimate_prompt_tokens
from services.router.failures import UPSTREAM_ERRORS
from services.router.queue import ClusterQueue, TierFull
from services.router.signals import prompt_text
from services.router.upstream import Tier
from shared import bus
from shared.config import AuditConfig, BusConfig
from shared.keys import AUDIT_GROUP, AUDIT_STREAM
from shared.messages import AuditSample, WireError, decode
from shared.supervise import Loops

log = structlog.get_logger(__name__)

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]

SAMPLES, KEEP_CLAIMED, STATE = "audit", "audit_keep_claimed", "audit_state"
REFRESH_S = 5.0  # the gauges follow the cluster's state at least this often
REFRESH_MIN_S = 1.0  # and at most this often, however many verdicts come in
DEFAULT_COMPLETION_TOKENS = 256  # the heavyweight's answer length, estimated, when the request sets no max


def completion_estimate(sample: AuditSample) -> int:
    """The heavyweight's answer length reserved before the call: the request's max_tokens, else twice the draft's."""
    body = sample.body
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0:
        return limit
    return max(2 * len(sample.tokens), 16) if sample.tokens else DEFAULT_COMPLETION_TOKENS


@dataclass
class Auditor:
    redis: Redis
    heavyweight: Tier
    config: AuditConfig
    bus_config: BusConfig
    consumer: str
    metrics: AuditMetrics
    embed: Embed | None = None  # None: no embedder configured (the judge alone can decide)
    queue: ClusterQueue | None = None  # the tiers' cluster_max_concurrent, shared with live traffic
    in_flight: dict[bytes, asyncio.Task[None]] = field(default_factory=dict)
    loops: Loops = field(default_factory=Loops)
    stopping: bool = False
    samples: bus.Consumer = field(init=False)
    budget: Budget = field(init=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.samples = bus.Consumer(
            self.redis, AUDIT_STREAM, AUDIT_GROUP, self.consumer, self._take,
            reclaim_idle_ms=self.bus_config.reclaim_idle_ms,
            reclaim_interval_s=self.bus_config.reclaim_interval_ms / 1000,
            capacity=lambda: self.config.max_concurrent - len(self.in_flight),
            owned=lambda: list(self.in_flight))
        self.budget = Budget(self.redis, self.config.max_cost_usd_per_day)
        if self.heavyweight.price is None:
            log.warning("the heavyweight is unpriced: the audit budget (audit.max_cost_usd_per_day) cannot limit it")

    def start(self) -> None:
        """Not essential to /ready: a router whose audit is stuck still answers requests."""
        self.loops.start(SAMPLES, self.samples.step, essential=False)
        self.loops.start(KEEP_CLAIMED, self._keep_claimed, essential=False)
        self.loops.start(STATE, self._refresh, essential=False)

    async def shutdown(self) -> None:
        """Stop reading, cancel the audits under way and hand their samples back to a live auditor."""
        self.stopping = self.samples.stopping = True
        self.loops.finish(SAMPLES)
        self.samples.wake()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.samples.block_ms / 1000 + 2):
                await self.loops.wait(SAMPLES)
        unfinished = list(self.in_flight)
        tasks = list(self.in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if unfinished:
            with contextlib.suppress(RedisError):
                await bus.hand_back(self.redis, AUDIT_STREAM, AUDIT_GROUP, self.consumer, unfinished)
        await self.loops.cancel()

    async def _take(self, entries: list[bus.Entry], reclaimed: bool) -> None:
        dropped = []
        for entry_id, raw in entries:
            if entry_id in self.in_flight:
                continue
            try:
                sample = decode(AuditSample, raw)
            except WireError as exc:
                log.error("dropping an undecodable audit sample", entry_id=entry_id.decode(), error=str(exc))
                dropped.append(entry_id)
                continue
            self.in_flight[entry_id] = asyncio.create_task(self._run(entry_id, sample))
        await bus.ack(self.redis, AUDIT_STREAM, AUDIT_GROUP, *dropped)

    async def _run(self, entry_id: bytes, sample: AuditSample) -> None:
        try:
            audit = await self.audit(sample)
            now = time.time()
            decided = audit.decided
            await store.record(self.redis, audit.verdict, self.config.window,
                               verdict_record(sample, audit, now) if decided else None,
                               label(sample, audit, now) if decided else None, self.config.labelled_maxlen,
                               done=entry_id)
            self.metrics.audits.labels(audit.verdict).inc()
            self.metrics.cost.inc(audit.cost_usd)
            log.info("audited", request_id=sample.request_id, verdict=audit.verdict, method=audit.method,
                     similarity=audit.similarity, judge_score=audit.judge_score, detail=audit.detail)
            self._changed.set()
        except RedisError as exc:  # left pending: an auditor reclaims it once Redis is back
            log.warning("could not record an audit; leaving the sample pending", error=repr(exc))
        except Exception:
            log.exception("audit failed", request_id=sample.request_id)
            self.metrics.audits.labels(ERROR).inc()
            with contextlib.suppress(RedisError):
                await bus.ack(self.redis, AUDIT_STREAM, AUDIT_GROUP, entry_id)
        finally:
            self.in_flight.pop(entry_id, None)
            self.samples.wake()

    async def audit(self, sample: AuditSample) -> Audit:
        """Re-ask, compare, conclude. Raises RedisError only (the budget lives in Redis)."""
        if not sample.text.strip():
            return Audit(SKIPPED_EMPTY, detail="the draft has no text (a tool call?)")
        messages = sample.body.get("messages") or []
        reservation = await self.budget.reserve(self._price(estimate_prompt_tokens(messages),
                                                            completion_estimate(sample)), time.time())
        if reservation is None:
            return Audit(SKIPPED_BUDGET, detail="audit.max_cost_usd_per_day reached")
        try:
            async with self._slot():
                answer = await stream_answer(self.heavyweight, sample.body)
        except TierFull:
            await self.budget.settle(reservation, 0.0)
            return Audit(SKIPPED_BUSY, detail="the heavyweight's cluster queue is full: live traffic first")
        except UPSTREAM_ERRORS as exc:
            await self.budget.settle(reservation, 0.0)
            return Audit(ERROR, detail=f"heavyweight: {exc}")
        cost = self._answer_cost(answer, messages)
        await self.budget.settle(reservation, cost)
        similarity = await self._similarity(sample.text, answer.text)
        score, judge_cost, detail = None, 0.0, ""
        if needs_judge(similarity, self.config.agree_similarity, self.config.judge):
            score, judge_cost, detail = await self._judge(sample, answer.text)
        heavy = {"heavy_text": answer.text, "heavy_usage": answer.usage, "heavy_model": self.heavyweight.model,
                 "heavy_latency_s": round(answer.latency_s, 4), "cost_usd": cost + judge_cost}
        if score is not None:
            return Audit(by_judge(score), JUDGE, similarity, score, detail=detail, **heavy)
        if similarity is not None:
            verdict = by_similarity(similarity, self.config.agree_similarity)
            sign = ">=" if verdict == "agree" else "<"
            return Audit(verdict, SIMILARITY, similarity, detail=f"cosine {similarity:.3f} {sign} "
                         f"{self.config.agree_similarity:g}" + (f"; {detail}" if detail else ""), **heavy)
        return Audit(UNDECIDED, detail=detail or "the embedder is unavailable and audit.judge is off", **heavy)

    def _price(self, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.heavyweight.price
        return price.cost(prompt_tokens, completion_tokens) if price is not None else 0.0

    def _answer_cost(self, answer: Answer, messages: Sequence[dict]) -> float:
        usage = answer.usage or {}
        prompt = usage.get("prompt_tokens") or estimate_prompt_tokens(messages)
        return self._price(prompt, usage.get("completion_tokens") or len(answer.text) // 4 + 1)

    async def _similarity(self, draft: str, heavy: str) -> float | None:
        if self.embed is None or not heavy.strip():
            return None
        try:
            first, second = await self.embed([draft, heavy])
        except EmbedderUnavailable as exc:
            log.warning("embedder unavailable for the audit", error=str(exc))
            return None
        return cosine(first, second)

    async def _judge(self, sample: AuditSample, reference: str) -> tuple[int | None, float, str]:
        """The judge's score of the draft against the heavyweight's answer (None: no score), what it cost
        (estimated: the judge prompt's tokens and its longest answer, twice if it must be asked again)."""
        request = prompt_text(sample.body.get("messages") or [])
        rubric = RUBRIC.format(reference=reference)
        prompt = JUDGE_PROMPT.format(request=request, rubric=rubric, answer=sample.text)
        estimate = self._price(estimate_prompt_tokens([{"content": prompt}]), JUDGE_MAX_TOKENS)
        reservation = await self.budget.reserve(estimate, time.time())
        if reservation is None:
            return None, 0.0, "judge skipped: audit.max_cost_usd_per_day reached"
        try:
            async with self._slot():
                verdict = await judge(self.heavyweight, request, rubric, sample.text)
        except TierFull:
            await self.budget.settle(reservation, 0.0)
            return None, 0.0, "judge skipped: the heavyweight's cluster queue is full"
        except (*UPSTREAM_ERRORS, NoScore) as exc:
            return None, estimate, f"judge failed: {exc}"
        return verdict.score, estimate, verdict.detail

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """A free slot of the heavyweight's cluster queue for one call (never waiting for one), or TierFull."""
        lease = await self.queue.acquire(self.heavyweight.name, wait=False) if self.queue is not None else None
        try:
            yield
        finally:
            if self.queue is not None:
                await self.queue.release(lease)

    async def _keep_claimed(self) -> None:
        """Audits can outlast the reclaim idle time (a slow heavyweight): keep theirs claimed."""
        await asyncio.sleep(self.bus_config.reclaim_interval_ms / 1000)
        await bus.keep_claimed(self.redis, AUDIT_STREAM, AUDIT_GROUP, self.consumer, list(self.in_flight))

    async def _refresh(self) -> None:
        """The gauges from the cluster's state: soon after a verdict here (at most every REFRESH_MIN_S: a
        snapshot reads every window), and every REFRESH_S for the other routers' verdicts."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REFRESH_S):
                await self._changed.wait()
        self._changed.clear()
        state = await store.snapshot(self.redis)
        self.metrics.show(state, await self.budget.spent(time.time()))
        await store.prune(self.redis, state.gone)
        await asyncio.sleep(REFRESH_MIN_S)


def embedder(session: aiohttp.ClientSession, url: str, model: str, timeout_s: float) -> Embed:
    """The embedder service's client (the cache's), as the auditor calls it."""
    return EmbedderClient(session, url, model, timeout_s).embed
