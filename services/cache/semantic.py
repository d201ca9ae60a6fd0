"""Semantic tier: last-user-message embeddings in a vector store, filtered by tenant, partition and expiry.

The store (services/cache/vectors: Qdrant Edge embedded, or a Qdrant server) has no TTL, so every
point carries `expires_at`: lookups skip expired points and purge() deletes them. The store is
sized by the first embedding written; a different size (the embedder's model changed) recreates
it, since old vectors are useless.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from qdrant_client.http.exceptions import ApiException

from services.cache.keys import RequestKeys
from services.cache.vectors.base import EXPIRES_AT, PARTITION, TENANT, Point, Scope, VectorStore, VectorStoreError

log = structlog.get_logger(__name__)

# What a vector store may raise when it cannot answer: callers degrade to a miss (lookups) or
# to the exact tier only (writes). The Edge engine raises VectorStoreError (its worker died, is
# starting, or a search waited past its deadline); a Qdrant server ApiException or OSError.
STORE_ERRORS: tuple[type[Exception], ...] = (VectorStoreError, ApiException, OSError, ValueError, RuntimeError)

TEXT, COMPLETION = "text", "completion"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A cached answer near the request: the verifier decides whether it is served."""

    text: str | None  # the cached request's semantic text (None: stored before texts were kept)
    completion: dict[str, Any]
    similarity: float


@dataclass(frozen=True, slots=True)
class SemanticEntry:
    keys: RequestKeys
    vector: list[float]
    completion: dict[str, Any]
    expires_at: float


class SemanticTier:
    def __init__(self, store: VectorStore) -> None:
        self._store = store
        self._size: int | None = None

    async def open(self) -> None:
        self._size = await self._store.size()

    async def search(self, keys: RequestKeys, vector: list[float], floor: float, limit: int, now: float
                     ) -> list[Candidate]:
        """The live entries of this tenant and partition with cosine >= floor, best first, at most limit."""
        if self._size is None:
            await self.open()  # another instance may have created it since
        if self._size != len(vector):
            return []
        hits = await self._store.search(vector, Scope(keys.tenant, keys.partition, live_at=now), floor=floor,
                                        limit=limit, fields=[COMPLETION, TEXT])
        return [Candidate(text=hit.payload.get(TEXT), completion=hit.payload[COMPLETION], similarity=hit.score)
                for hit in hits]

    async def put(self, entries: list[SemanticEntry]) -> None:
        if not entries:
            return
        await self._ensure(len(entries[0].vector))
        await self._store.upsert([point(e) for e in entries])

    async def count(self, now: float) -> int:
        if self._size is None:
            return 0
        return await self._store.count(Scope(live_at=now))

    async def flush(self, now: float, tenant_tag: str | None = None, partition: str | None = None) -> int:
        """Delete a tenant's or partition's points, or all; returns how many were live."""
        if self._size is None:
            return 0
        flushed = await self._store.count(Scope(tenant_tag, partition, live_at=now))
        await self._store.delete(Scope(tenant_tag, partition))
        return flushed

    async def purge(self, now: float) -> None:
        """Delete the expired points, then let the store index and compact what changed."""
        if self._size is None:
            return
        await self._store.delete(Scope(expired_at=now))
        await self._store.maintain()

    async def close(self) -> None:
        await self._store.close()

    async def _ensure(self, size: int) -> None:
        if self._size is None:
            await self.open()
        if self._size == size:
            return
        if self._size is not None:
            log.warning("embedding size changed; recreating the semantic cache", old=self._size, new=size)
        await self._store.recreate(size)
        self._size = size


def point(entry: SemanticEntry) -> Point:
    """Pure: an entry as a stored point; its id derives from the exact key, so a rewrite replaces it."""
    keys = entry.keys
    return Point(id=str(uuid.UUID(keys.exact[:32])), vector=entry.vector,
                 payload={TENANT: keys.tenant, PARTITION: keys.partition, EXPIRES_AT: entry.expires_at,
                          TEXT: keys.semantic_text, COMPLETION: entry.completion})
