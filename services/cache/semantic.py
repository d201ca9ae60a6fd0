"""Semantic tier: last-user-message embeddings in Qdrant, filtered by tenant, partition and expiry.

Qdrant has no TTL, so every point carries `expires_at`: lookups skip expired points and
purge() deletes them. The collection is created on the first write, sized by the embedding;
a different size (the embedder's model changed) recreates it, since old vectors are useless.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ApiException

from services.cache.keys import RequestKeys

log = structlog.get_logger(__name__)

# What a vector store may raise when it cannot answer: callers degrade to a miss (lookups) or
# to the exact tier only (writes). Qdrant's local mode raises plain ValueError/RuntimeError,
# its server mode ApiException or OSError.
STORE_ERRORS: tuple[type[Exception], ...] = (ApiException, OSError, ValueError, RuntimeError)


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
    def __init__(self, client: AsyncQdrantClient, collection: str, *, indexed: bool) -> None:
        self._client = client
        self._collection = collection
        self._indexed = indexed  # payload indexes only help (and only exist) on a Qdrant server
        self._size: int | None = None

    async def open(self) -> None:
        if await self._client.collection_exists(self._collection):
            info = await self._client.get_collection(self._collection)
            vectors = info.config.params.vectors
            self._size = vectors.size if isinstance(vectors, models.VectorParams) else None

    async def search(self, keys: RequestKeys, vector: list[float], floor: float, limit: int, now: float
                     ) -> list[Candidate]:
        """The live entries of this tenant and partition with cosine >= floor, best first, at most limit."""
        if self._size is None:
            await self.open()  # another instance may have created it since
        if self._size != len(vector):
            return []
        response = await self._client.query_points(
            self._collection, query=vector, query_filter=_filter(keys.tenant, keys.partition, live_at=now),
            limit=limit, score_threshold=floor, with_payload=["completion", "text"])
        return [Candidate(text=point.payload.get("text"), completion=point.payload["completion"],
                          similarity=float(point.score)) for point in response.points]

    async def put(self, entries: list[SemanticEntry]) -> None:
        if not entries:
            return
        await self._ensure(len(entries[0].vector))
        points = [models.PointStruct(id=str(uuid.UUID(e.keys.exact[:32])), vector=e.vector,
                                     payload={"tenant": e.keys.tenant, "partition": e.keys.partition,
                                              "expires_at": e.expires_at, "text": e.keys.semantic_text,
                                              "completion": e.completion})
                  for e in entries]
        await self._client.upsert(self._collection, points=points)

    async def count(self, now: float) -> int:
        if self._size is None:
            return 0
        result = await self._client.count(self._collection, count_filter=_filter(live_at=now), exact=True)
        return result.count

    async def flush(self, now: float, tenant_tag: str | None = None, partition: str | None = None) -> int:
        """Delete a tenant's or partition's points, or all; returns how many were live."""
        if self._size is None:
            return 0
        flushed = (await self._client.count(self._collection, count_filter=_filter(tenant_tag, partition, live_at=now),
                                            exact=True)).count
        selector = models.FilterSelector(filter=_filter(tenant_tag, partition))
        await self._client.delete(self._collection, points_selector=selector)
        return flushed

    async def purge(self, now: float) -> None:
        if self._size is None:
            return
        expired = models.Filter(must=[models.FieldCondition(key="expires_at", range=models.Range(lte=now))])
        await self._client.delete(self._collection, points_selector=models.FilterSelector(filter=expired))

    async def _ensure(self, size: int) -> None:
        if self._size is None:
            await self.open()
        if self._size == size:
            return
        if self._size is not None:
            log.warning("embedding size changed; recreating the semantic cache", old=self._size, new=size)
            await self._client.delete_collection(self._collection)
        await self._client.create_collection(
            self._collection, vectors_config=models.VectorParams(size=size, distance=models.Distance.COSINE))
        if self._indexed:
            for name, schema in (("tenant", models.PayloadSchemaType.KEYWORD),
                                 ("partition", models.PayloadSchemaType.KEYWORD),
                                 ("expires_at", models.PayloadSchemaType.FLOAT)):
                await self._client.create_payload_index(self._collection, name, field_schema=schema)
        self._size = size


def _filter(tenant_tag: str | None = None, partition: str | None = None, *, live_at: float | None = None
            ) -> models.Filter:
    must: list[models.Condition] = []
    if tenant_tag is not None:
        must.append(models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant_tag)))
    if partition is not None:
        must.append(models.FieldCondition(key="partition", match=models.MatchValue(value=partition)))
    if live_at is not None:
        must.append(models.FieldCondition(key="expires_at", range=models.Range(gt=live_at)))
    return models.Filter(must=must)
