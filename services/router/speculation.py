"""Speculative heavyweight calls: started early, held, then either used or cancelled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from services.router.assemble import content_tokens
from services.router.costs import Served, served_by
from services.router.upstream import Tier, open_chunks

# How a speculation opens its stream: open_chunks, or the router's (with the tier's cluster queue).
Opener = Callable[[Tier, dict[str, Any]], AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]]


@dataclass
class SpeculationBudget:
    """Bounds parallel heavyweight calls per router so uncertain bursts cannot stampede it."""

    limit: int
    active: int = 0

    def try_acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1


class Speculation:
    """A heavyweight stream running beside the draft, holding its chunks until it is needed."""

    def __init__(self, tier: Tier, params: dict[str, Any], budget: SpeculationBudget,
                 opener: Opener = open_chunks) -> None:
        self.started = time.monotonic()
        self.chunks: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.served: Served | None = None  # the deployment that took the call, once its stream opened
        self._done = False
        self._arrived = asyncio.Event()
        self._budget = budget
        self._task = asyncio.create_task(self._run(tier, params, opener))
        # Not in _run's finally: a task cancelled before its first step never runs its body
        # (a draft read in one network block is accepted and cancels at once), yet its done
        # callbacks always run, exactly once.
        self._task.add_done_callback(self._finished)

    async def _run(self, tier: Tier, params: dict[str, Any], opener: Opener) -> None:
        try:
            async with opener(tier, params) as chunks:
                self.served = served_by(tier, chunks)
                async for chunk in chunks:
                    self.chunks.append(chunk)
                    self._arrived.set()
        except Exception as exc:
            self.error = exc

    def _finished(self, _task: asyncio.Task[None]) -> None:
        self._done = True
        self._arrived.set()
        self._budget.release()

    async def cancel(self) -> int:
        """Close the heavyweight connection now; returns the tokens it had produced (waste)."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return sum(content_tokens(chunk) for chunk in self.chunks)

    @property
    def failed_early(self) -> bool:
        """It ended with an error before any chunk (its slot refused, its deployments down)."""
        return self._done and self.error is not None and not self.chunks

    async def opened(self) -> bool:
        """Wait until the stream produced a chunk (True) or ended without one (False)."""
        while not self.chunks and not self._done:
            self._arrived.clear()
            await self._arrived.wait()
        return bool(self.chunks)

    async def follow(self) -> AsyncIterator[dict[str, Any]]:
        """The held chunks at once, then the live ones as they arrive."""
        sent = 0
        while True:
            while sent < len(self.chunks):
                sent += 1
                yield self.chunks[sent - 1]
            if self._done:
                if self.error is not None:
                    raise self.error
                return
            self._arrived.clear()
            await self._arrived.wait()
