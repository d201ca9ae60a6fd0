"""The vector store on a Qdrant server (compose, Kubernetes) through qdrant-client's async client.

One collection; payload indexes on the filtered fields, so the server's planner narrows a
search to one tenant's partition before it compares vectors.
"""

from __future__ import annotations

from qdrant_client import AsyncQdrantClient, models

from services.cache.vectors.base import EXPIRES_AT, PARTITION, TENANT, Hit, Point, Scope, VectorStore

INDEXES = ((TENANT, models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)),
           (PARTITION, models.PayloadSchemaType.KEYWORD),
           (EXPIRES_AT, models.PayloadSchemaType.FLOAT))


class ServerStore(VectorStore):
    def __init__(self, client: AsyncQdrantClient, collection: str) -> None:
        self._client = client
        self._collection = collection

    async def size(self) -> int | None:
        if not await self._client.collection_exists(self._collection):
            return None
        vectors = (await self._client.get_collection(self._collection)).config.params.vectors
        return vectors.size if isinstance(vectors, models.VectorParams) else None

    async def recreate(self, size: int) -> None:
        if await self._client.collection_exists(self._collection):
            await self._client.delete_collection(self._collection)
        await self._client.create_collection(
            self._collection, vectors_config=models.VectorParams(size=size, distance=models.Distance.COSINE))
        for name, schema in INDEXES:
            await self._client.create_payload_index(self._collection, name, field_schema=schema)

    async def search(self, vector: list[float], scope: Scope, *, floor: float, limit: int,
                     fields: list[str]) -> list[Hit]:
        response = await self._client.query_points(self._collection, query=vector, query_filter=server_filter(scope),
                                                   limit=limit, score_threshold=floor, with_payload=fields)
        return [Hit(point.payload or {}, float(point.score)) for point in response.points]

    async def upsert(self, points: list[Point]) -> None:
        await self._client.upsert(self._collection, points=[
            models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points])

    async def count(self, scope: Scope) -> int:
        return (await self._client.count(self._collection, count_filter=server_filter(scope), exact=True)).count

    async def delete(self, scope: Scope) -> None:
        await self._client.delete(self._collection, points_selector=models.FilterSelector(filter=server_filter(scope)))

    async def maintain(self) -> None:
        """The server indexes and vacuums in the background."""

    async def close(self) -> None:
        await self._client.close()


def server_filter(scope: Scope) -> models.Filter:
    """Pure: the scope as a qdrant-client filter."""
    must: list[models.Condition] = []
    if scope.tenant is not None:
        must.append(models.FieldCondition(key=TENANT, match=models.MatchValue(value=scope.tenant)))
    if scope.partition is not None:
        must.append(models.FieldCondition(key=PARTITION, match=models.MatchValue(value=scope.partition)))
    if scope.live_at is not None:
        must.append(models.FieldCondition(key=EXPIRES_AT, range=models.Range(gt=scope.live_at)))
    if scope.expired_at is not None:
        must.append(models.FieldCondition(key=EXPIRES_AT, range=models.Range(lte=scope.expired_at)))
    return models.Filter(must=must)
