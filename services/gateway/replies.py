"""This gateway's reply stream: one background reader wakes the request each reply is for.

Replies carry a sequence number per request: a router that took over a request from a
dead one starts again at 1, and whatever the client already got is dropped here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import bus
from shared.aio import being_cancelled
from shared.messages import Reply, ReplyBatch, ReplyKind, WireError, decode

log = structlog.get_logger(__name__)

READ_BLOCK_MS = 1000
READ_COUNT = 512
RETRY_PAUSE_S = 0.2
# A retry shorter than the attempt the client already saw must still be able to finish it.
_TERMINAL = frozenset({ReplyKind.COMPLETION, ReplyKind.ERROR, ReplyKind.END})


@dataclass
class Waiter:
    queue: asyncio.Queue[Reply] = field(default_factory=asyncio.Queue)
    last_seq: int = 0


@dataclass
class ReplyReader:
    redis: Redis
    stream: str
    waiters: dict[str, Waiter] = field(default_factory=dict)

    def expect(self, request_id: str) -> Waiter:
        waiter = self.waiters[request_id] = Waiter()
        return waiter

    def forget(self, request_id: str) -> None:
        self.waiters.pop(request_id, None)

    async def run(self) -> None:
        last_id: bytes | str = "0-0"
        while not being_cancelled():
            try:
                entries = await bus.read(self.redis, self.stream, last_id, count=READ_COUNT, block_ms=READ_BLOCK_MS)
            except RedisError as exc:
                log.warning("reading replies failed", error=str(exc))
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            for entry_id, raw in entries:
                last_id = entry_id
                self._dispatch(raw)
            # Let the woken requests answer their clients before the next read is sent.
            await asyncio.sleep(0)

    def _dispatch(self, raw: bytes) -> None:
        try:
            replies = [decode(Reply, item) for item in decode(ReplyBatch, raw).replies]
        except WireError as exc:
            log.error("undecodable reply", error=str(exc))
            return
        for reply in replies:
            self._deliver(reply)

    def _deliver(self, reply: Reply) -> None:
        waiter = self.waiters.get(reply.request_id)
        if waiter is None:
            return
        if reply.seq <= waiter.last_seq and reply.kind not in _TERMINAL:
            return
        waiter.last_seq = max(waiter.last_seq, reply.seq)
        waiter.queue.put_nowait(reply)
        if reply.kind == ReplyKind.END:
            self.forget(reply.request_id)
