"""The vector-store interface the semantic tier is written against, and the words it speaks.

Two engines implement it: Qdrant Edge embedded in a worker process (the default) and a
Qdrant server through qdrant-client. Both filter on the same three payload fields, which
both index; everything else in a payload is stored and returned, never filtered on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

# The payload fields every filter is made of; each engine keeps an index on each.
TENANT, PARTITION, EXPIRES_AT = "tenant", "partition", "expires_at"


class VectorStoreError(RuntimeError):
    """The store could not answer (its process died, it is starting, a deadline passed)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Which points an operation touches: every condition given must hold; none given, all points."""

    tenant: str | None = None
    partition: str | None = None
    live_at: float | None = None  # expires_at > live_at
    expired_at: float | None = None  # expires_at <= expired_at


@dataclass(frozen=True, slots=True)
class Point:
    id: str  # a UUID
    vector: list[float]
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Hit:
    payload: dict[str, Any]  # only the fields the search asked for
    score: float  # cosine similarity


class VectorStore(ABC):
    """One collection of same-sized vectors with payloads, compared by cosine."""

    @abstractmethod
    async def size(self) -> int | None:
        """The size of the stored vectors; None while nothing was ever stored."""

    @abstractmethod
    async def recreate(self, size: int) -> None:
        """Drop every point and hold vectors of this size from now on, with the payload indexes."""

    @abstractmethod
    async def search(self, vector: list[float], scope: Scope, *, floor: float, limit: int,
                     fields: list[str]) -> list[Hit]:
        """The points in scope with cosine >= floor, best first, at most limit."""

    @abstractmethod
    async def upsert(self, points: list[Point]) -> None: ...

    @abstractmethod
    async def count(self, scope: Scope) -> int: ...

    @abstractmethod
    async def delete(self, scope: Scope) -> None: ...

    @abstractmethod
    async def maintain(self) -> None:
        """Periodic upkeep after a purge: indexing, merging, vacuuming (a server does its own)."""

    @abstractmethod
    async def close(self) -> None: ...
