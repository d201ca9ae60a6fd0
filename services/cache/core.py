"""The cache's behaviour over its two tiers: look up, store, count, flush.

Every store failure degrades: a lookup whose tier is down is a miss for that tier, a write
whose semantic half fails still lands in the exact tier. Nothing here raises to a caller.
A semantic candidate is served only once the verification chain (chain.py) passed it; a lookup
that cannot finish within its budget is a counted miss, its work cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.exceptions import RedisError

from services.cache.chain import Chain
from services.cache.embeddings import EmbedderClient, EmbedderUnavailable
from services.cache.exact import ExactTier
from services.cache.keys import RequestKeys, request_keys, tenant_hash
from services.cache.memo import VectorMemo
from services.cache.policy import cacheable
from services.cache.semantic import STORE_ERRORS, SemanticEntry, SemanticTier
from services.cache.stats import Recorder, Tier
from shared.config import CacheConfig
from shared.messages import CacheWrite

log = structlog.get_logger(__name__)

MISS: dict[str, Any] = {"hit": False}
# A lookup answers within this share of the time its caller waits: the rest is for the answer's
# way back and a busy caller, so a late lookup reaches the caller as a miss, not as its timeout.
BUDGET_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class Pending:
    """One accepted write, keyed and ready for the tiers."""

    keys: RequestKeys
    completion: dict[str, Any]
    expires_at: float


@dataclass
class Cache:
    config: CacheConfig
    exact: ExactTier
    semantic: SemanticTier
    embedder: EmbedderClient
    record: Recorder
    chain: Chain
    memo: VectorMemo = field(default_factory=VectorMemo)
    clock: Callable[[], float] = time.time

    async def lookup(self, body: dict[str, Any], tenant: str, wait_s: float) -> dict[str, Any]:
        """The answer to one request, or MISS; the caller waits `wait_s` for it."""
        self.record.lookup()
        if not cacheable(body, self.config.max_temperature):
            self.record.bypass()
            return MISS
        keys = request_keys(body, tenant)
        tier = Tier.EXACT
        try:
            async with asyncio.timeout(wait_s * BUDGET_SHARE) as budget:
                found = await self._exact(keys)
                if found is None and keys.semantic_text is not None:
                    tier = Tier.SEMANTIC
                    found = await self._semantic(keys, keys.semantic_text)
        except TimeoutError:
            if not budget.expired():
                raise
            log.warning("cache lookup ran out of time; treating as a miss", tier=tier.value, budget_s=wait_s)
            self.record.timeout(tier)
            return MISS
        return MISS if found is None else found

    async def store(self, writes: list[CacheWrite]) -> None:
        """Write a batch of accepted answers to both tiers, embedding all texts in one call."""
        pending = [p for p in (self._accept(write) for write in writes) if p is not None]
        for entry in pending:
            await self.exact.put(entry.keys, entry.completion, entry.expires_at)
        self.record.write("stored", len(pending))
        semantic = [p for p in pending if p.keys.semantic_text is not None]
        if semantic:
            await self._store_semantic(semantic)

    async def entries(self) -> dict[Tier, int]:
        counts = {Tier.EXACT: 0, Tier.SEMANTIC: 0}
        try:
            counts[Tier.EXACT] = await self.exact.count()
        except RedisError as exc:
            log.warning("exact tier unavailable for stats", error=repr(exc))
        try:
            counts[Tier.SEMANTIC] = await self.semantic.count(self.clock())
        except STORE_ERRORS as exc:
            log.warning("semantic tier unavailable for stats", error=repr(exc))
        return counts

    async def flush(self, tenant: str | None, partition: str | None) -> dict[str, int]:
        """Flush errors propagate: an operator must know a flush did not happen."""
        tag = None if tenant is None else tenant_hash(tenant)
        exact = await self.exact.flush(tag, partition)
        semantic = await self.semantic.flush(self.clock(), tag, partition)
        log.info("cache flushed", tenant=tag, partition=partition, exact=exact, semantic=semantic)
        return {"flushed": exact + semantic, "exact": exact, "semantic": semantic}

    async def purge(self) -> None:
        await self.semantic.purge(self.clock())

    async def _exact(self, keys: RequestKeys) -> dict[str, Any] | None:
        try:
            completion = await self.exact.get(keys)
        except RedisError as exc:
            log.warning("exact tier lookup failed; treating as a miss", error=repr(exc))
            self.record.error(Tier.EXACT)
            return None
        if completion is None:
            self.record.miss(Tier.EXACT)
            return None
        self.record.hit(Tier.EXACT)
        return {"hit": True, "tier": Tier.EXACT.value, "similarity": 1.0, "completion": completion,
                "partition": keys.partition}

    async def _semantic(self, keys: RequestKeys, text: str) -> dict[str, Any] | None:
        try:
            [vector] = await self._vectors([text])
            candidates = await self.semantic.search(keys, vector, self.config.similarity_floor,
                                                    self.config.candidates, self.clock())
        except (EmbedderUnavailable, *STORE_ERRORS) as exc:
            log.warning("semantic tier lookup failed; treating as a miss", error=repr(exc))
            self.record.error(Tier.SEMANTIC)
            return None
        served = await self.chain.first_passing(text, candidates, self.record.rejected)
        if served is None:
            self.record.miss(Tier.SEMANTIC)
            return None
        self.record.hit(Tier.SEMANTIC)
        return {"hit": True, "tier": Tier.SEMANTIC.value, "similarity": served.candidate.similarity,
                "completion": served.candidate.completion, "partition": keys.partition,
                "verified": served.verified}

    async def _vectors(self, texts: list[str], timeout_s: float | None = None) -> list[list[float]]:
        """One vector per text: those this process computed lately from the memo, the rest in one
        embedder call (each distinct text once, waiting up to timeout_s, if not the lookups' time),
        remembered for the write that follows a miss."""
        known = {text: vector for text in texts if (vector := self.memo.get(text)) is not None}
        missing = list(dict.fromkeys(text for text in texts if text not in known))
        if missing:
            for text, vector in zip(missing, await self.embedder.embed(missing, timeout_s), strict=True):
                self.memo.put(text, vector)
                known[text] = vector
        self.record.vectors("memo", len(texts) - len(missing))
        self.record.vectors("embedder", len(missing))
        return [known[text] for text in texts]

    def _accept(self, write: CacheWrite) -> Pending | None:
        try:
            if not cacheable(write.body, self.config.max_temperature):
                self.record.write("rejected")
                return None
            keys = request_keys(write.body, write.tenant)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("dropping a malformed cache write", request_id=write.request_id, error=repr(exc))
            self.record.write("invalid")
            return None
        now = self.clock()
        created = min(write.created, now) if write.created > 0 else now
        expires_at = created + self.config.ttl_s
        if expires_at <= now:
            self.record.write("expired")
            return None
        return Pending(keys, write.completion, expires_at)

    async def _store_semantic(self, pending: list[Pending]) -> None:
        """The texts a lookup embedded come from the memo; the rest (a lookup that ran out of time
        before its vector came back, a memo that dropped it) are embedded with the writes' patience:
        with the lookups' one second, a write stuck behind a burst lost all its 64 entries at once."""
        try:
            vectors = await self._vectors([p.keys.semantic_text or "" for p in pending],
                                          self.config.embedder_write_timeout_s)
            await self.semantic.put([SemanticEntry(p.keys, v, p.completion, p.expires_at)
                                     for p, v in zip(pending, vectors, strict=True)])
        except (EmbedderUnavailable, *STORE_ERRORS) as exc:
            log.warning("semantic tier write failed; stored in the exact tier only", count=len(pending),
                        error=repr(exc))
            self.record.write("semantic_error", len(pending))
