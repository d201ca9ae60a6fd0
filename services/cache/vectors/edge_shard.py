"""The vector store on a Qdrant Edge shard, synchronously: what the worker process runs.

qdrant-edge-py holds the GIL for a whole query (milliseconds) and a whole optimize() (seconds
for every 10,000 new points), so this code must never run in the cache service's own process:
edge_worker.py runs it in a child, and edge.py talks to that child.

The shard lives in one directory. Its write-ahead log makes every update durable once update()
returns, so a killed process loses nothing it was told was written. Indexing is ours to run:
Edge has no background optimizer, so maintain() calls optimize(), which builds the HNSW graph
of every segment that outgrew the indexing threshold (and merges and vacuums segments).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    HnswIndexConfig,
    KeywordIndexParams,
    MatchValue,
    PayloadSchemaType,
    Query,
    QueryRequest,
    RangeFloat,
    SearchParams,
    UpdateOperation,
)
from qdrant_edge import Point as EdgePoint

from services.cache.vectors.base import EXPIRES_AT, PARTITION, TENANT, Hit, Point, Scope

CONFIG_FILE = "edge_config.json"  # written by Edge in every shard directory

# HNSW: Qdrant's defaults for m; a smaller ef_construct halves the build time, and neighbours at
# cosine >= 0.8 are easy to find. One indexing thread and one search thread: the service shares
# its cores, and a search parallel over segments costs more CPU than it saves in latency.
HNSW = HnswIndexConfig(m=16, ef_construct=64, full_scan_threshold=10_000, max_indexing_threads=1)
# Segments of about 25,000 MiniLM vectors: indexing one stalls the shard for seconds, not minutes
# (optimize holds the GIL and the worker's only thread), and a search visits few of them.
# Expired points leave their segment together (they were written together), so vacuuming waits
# until most of a segment is dead rather than rebuilding it again and again as it empties.
OPTIMIZERS = EdgeOptimizersConfig(default_segment_number=6, max_segment_size=40_000, indexing_threshold=8_000,
                                  deleted_threshold=0.5)
# How wide a search explores the graph. Measured on 100,000 random unit vectors (the hardest case:
# real embeddings cluster) for a query at cosine 0.9 from one of them: ef 64 found it 84% of the
# time in 1.1 ms, ef 128 99% in 1.8 ms, ef 200 100% in 2.6 ms (an exact scan: 23 ms).
SEARCH = SearchParams(hnsw_ef=128)


def shard_config(size: int) -> EdgeConfig:
    return EdgeConfig(vectors=EdgeVectorParams(size=size, distance=Distance.Cosine), hnsw_config=HNSW,
                      optimizers=OPTIMIZERS, max_search_threads=1)


class ShardStore:
    """One shard directory; the same operations as the VectorStore interface, blocking."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._shard: EdgeShard | None = None
        self._size: int | None = None

    def open(self) -> int | None:
        """Load the shard if the directory holds one (replaying its WAL); returns its vector size.

        Loading with our config applies this module's tuning to a shard made with older settings.
        """
        config_file = self._path / CONFIG_FILE
        if self._shard is None and config_file.exists():
            size = stored_size(config_file)
            self._shard = EdgeShard.load(str(self._path), shard_config(size))
            self._size = size
        return self._size

    def size(self) -> int | None:
        return self._size

    def recreate(self, size: int) -> None:
        self.close()
        shutil.rmtree(self._path, ignore_errors=True)
        self._path.mkdir(parents=True)
        shard = EdgeShard.create(str(self._path), shard_config(size))
        shard.update(UpdateOperation.create_field_index(TENANT, KeywordIndexParams(is_tenant=True)))
        shard.update(UpdateOperation.create_field_index(PARTITION, PayloadSchemaType.Keyword))
        shard.update(UpdateOperation.create_field_index(EXPIRES_AT, PayloadSchemaType.Float))
        self._shard, self._size = shard, size

    def search(self, vector: list[float], scope: Scope, floor: float, limit: int, fields: list[str]) -> list[Hit]:
        points = self._open_shard().query(QueryRequest(
            limit=limit, query=Query.Nearest(vector), filter=edge_filter(scope), score_threshold=floor,
            with_payload=fields, params=SEARCH))
        return [Hit(point.payload or {}, float(point.score)) for point in points]

    def upsert(self, points: list[Point]) -> None:
        self._open_shard().update(UpdateOperation.upsert_points(
            [EdgePoint(p.id, p.vector, p.payload) for p in points]))

    def count(self, scope: Scope) -> int:
        return self._open_shard().count(CountRequest(exact=True, filter=edge_filter(scope)))

    def delete(self, scope: Scope) -> None:
        self._open_shard().update(UpdateOperation.delete_points_by_filter(edge_filter(scope)))

    def maintain(self) -> bool:
        """Index, merge and vacuum what needs it, then flush; True if any segment was rebuilt."""
        if self._shard is None:
            return False
        rebuilt = self._shard.optimize()
        self._shard.flush()
        return rebuilt

    def indexed(self) -> int:
        """How many points an HNSW graph holds (the rest are searched by a scan)."""
        return 0 if self._shard is None else self._shard.info().indexed_vectors_count

    def close(self) -> None:
        if self._shard is not None:
            self._shard.close()
            self._shard = None

    def _open_shard(self) -> EdgeShard:
        if self._shard is None:
            raise LookupError("no shard yet: nothing was ever stored")
        return self._shard


def stored_size(config_file: Path) -> int:
    """The vector size a shard was created with, from the config Edge keeps beside its data."""
    return int(json.loads(config_file.read_text())["vectors"][""]["size"])


def edge_filter(scope: Scope) -> Filter:
    """Pure: the scope as an Edge filter."""
    must: list[FieldCondition] = []
    if scope.tenant is not None:
        must.append(FieldCondition(TENANT, match=MatchValue(scope.tenant)))
    if scope.partition is not None:
        must.append(FieldCondition(PARTITION, match=MatchValue(scope.partition)))
    if scope.live_at is not None:
        must.append(FieldCondition(EXPIRES_AT, range=RangeFloat(gt=scope.live_at)))
    if scope.expired_at is not None:
        must.append(FieldCondition(EXPIRES_AT, range=RangeFloat(lte=scope.expired_at)))
    return Filter(must=must)
