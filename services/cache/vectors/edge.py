"""The embedded vector store: a Qdrant Edge shard owned by a worker process, spoken to over pipes.

Why a process, not a thread: qdrant-edge-py holds the GIL for a whole query and a whole index
build, so from a thread it would still stop the event loop (measured: 15 ms per query at 100,000
points without an index; 12 s per 20,000 points indexed). The worker answers in request order;
requests are written and their futures queued in the same step, so replies match by order.

If the worker dies, every waiting call fails with VectorStoreError (callers degrade to a miss) and
the next call after restart_after_s starts a new one, which replays the shard's write-ahead log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import structlog

import services
from services.cache.vectors import edge_wire as wire
from services.cache.vectors.base import Hit, Point, Scope, VectorStore, VectorStoreError

log = structlog.get_logger(__name__)

WORKER = "services.cache.vectors.edge_worker"
ROOT = str(Path(services.__file__).resolve().parent.parent)  # where the worker imports this code from
CLOSE_TIMEOUT_S = 10.0  # then the worker is killed: its write-ahead log keeps what it acknowledged


class EdgeStore(VectorStore):
    def __init__(self, path: Path, *, search_budget_s: float, restart_after_s: float = 5.0) -> None:
        self._path = path.resolve()
        self._search_budget_s = search_budget_s  # a search still queued after this is answered with an error
        self._restart_after_s = restart_after_s
        self._process: asyncio.subprocess.Process | None = None
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._failed_at: float | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs (tests kill it)."""
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    async def size(self) -> int | None:
        return await self._call("size")

    async def recreate(self, size: int) -> None:
        await self._call("recreate", size)

    async def search(self, vector: list[float], scope: Scope, *, floor: float, limit: int,
                     fields: list[str]) -> list[Hit]:
        deadline = time.monotonic() + self._search_budget_s  # the monotonic clock is the machine's, not the process's
        return wire.unpack_hits(await self._call("search", wire.pack_vector(vector), wire.pack_scope(scope), floor,
                                                 limit, fields, deadline))

    async def upsert(self, points: list[Point]) -> None:
        await self._call("upsert", wire.pack_points(points))

    async def count(self, scope: Scope) -> int:
        return await self._call("count", wire.pack_scope(scope))

    async def delete(self, scope: Scope) -> None:
        await self._call("delete", wire.pack_scope(scope))

    async def maintain(self) -> None:
        started = time.monotonic()
        if await self._call("maintain"):
            log.info("semantic cache indexed", seconds=round(time.monotonic() - started, 2))

    async def close(self) -> None:
        self._closed = True
        process = self._process
        if process is None or process.returncode is not None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._send("close")
                await process.wait()
        except (TimeoutError, VectorStoreError):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if self._reader is not None:
            await self._reader

    async def _call(self, op: str, *args: Any) -> Any:
        await self._ensure_worker()
        return await self._send(op, *args)

    async def _send(self, op: str, *args: Any) -> Any:
        process = self._process
        if process is None or process.stdin is None or self._reader is None or self._reader.done():
            raise VectorStoreError("the Edge worker is not running")
        # No await from the check to the append: a reader still running will answer or fail this reply.
        reply = asyncio.get_running_loop().create_future()
        try:
            process.stdin.write(wire.frame([op, *args]))
        except (ConnectionError, RuntimeError) as exc:  # the pipe closed under us
            raise VectorStoreError(f"the Edge worker is gone: {exc!r}") from exc
        self._pending.append(reply)
        with contextlib.suppress(ConnectionError):  # a dead worker's pipe: the reader fails the future
            await process.stdin.drain()
        ok, result = await reply
        if not ok:
            raise VectorStoreError(result)
        return result

    async def _ensure_worker(self) -> None:
        if self._process is not None and self._process.returncode is None:
            return
        async with self._starting:
            if self._process is not None and self._process.returncode is None:
                return
            if self._closed:
                raise VectorStoreError("the vector store is closed")
            if self._failed_at is not None and time.monotonic() - self._failed_at < self._restart_after_s:
                raise VectorStoreError("the Edge worker exited; waiting before starting another")
            await self._spawn()

    async def _spawn(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
        try:
            self._process = process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", WORKER, str(self._path), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=env)
        except OSError:
            self._failed_at = time.monotonic()
            raise
        hello = asyncio.get_running_loop().create_future()
        self._pending.append(hello)  # the worker's first reply says its shard is loaded
        self._reader = asyncio.create_task(self._read(process), name="edge-worker-replies")
        ok, _size = await hello
        if not ok:
            raise VectorStoreError("the Edge worker did not start")

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            while True:
                header = await process.stdout.readexactly(wire.HEADER.size)
                (length,) = wire.HEADER.unpack(header)
                reply = wire.unframe(await process.stdout.readexactly(length))
                waiter = self._pending.popleft()
                if not waiter.done():  # its caller may have given up (a cancelled lookup)
                    waiter.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker exited
        except Exception:  # a garbled reply: nothing after it can be matched to its request
            log.exception("unreadable reply from the Edge worker; stopping it")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        code = await process.wait()
        if not self._closed:
            self._failed_at = time.monotonic()
            log.warning("the Edge worker exited; semantic lookups miss until it is back", returncode=code,
                        path=str(self._path))
        error = VectorStoreError(f"the Edge worker exited (code {code})")
        while self._pending:
            waiter = self._pending.popleft()
            if not waiter.done():
                waiter.set_exception(error)
