"""A hand-written embedding backend for batcher tests: deterministic vectors, a history of calls.

`hold()` makes the next model calls wait until `release()`, so a test can pile requests up
behind a busy model without relying on timing; `fail_next(exc)` makes the next call raise.
"""

from __future__ import annotations

import asyncio
import zlib

import numpy as np

from services.embedder.backends import Batch, EmbeddingBackend


def vector_of(text: str) -> list[float]:
    """What this backend embeds `text` as: unique per text, the same in any batch."""
    return [float(len(text)), float(zlib.crc32(text.encode()) % 100_003)]


class CountingBackend(EmbeddingBackend):
    def __init__(self) -> None:
        self.model = "fake-embedder"
        self.history: list[list[str]] = []
        self._gate = asyncio.Event()
        self._gate.set()
        self._failures: list[Exception] = []
        self.started = asyncio.Event()  # set when a call has begun

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def fail_next(self, exc: Exception) -> None:
        self._failures.append(exc)

    async def embed_batch(self, texts: list[str]) -> Batch:
        self.history.append(list(texts))
        self.started.set()
        await self._gate.wait()
        if self._failures:
            raise self._failures.pop(0)
        return Batch(np.asarray([vector_of(t) for t in texts], dtype=np.float32), [len(t.split()) for t in texts])

    @property
    def call_sizes(self) -> list[int]:
        return [len(texts) for texts in self.history]
