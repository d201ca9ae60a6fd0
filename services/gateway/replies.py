"""This gateway's reply stream: one background reader wakes the request each reply is for, and
a watcher ends the requests the bus lost instead of letting them wait for the timeout.

Replies carry a sequence number per request: a router that took over a request from a
dead one starts again at 1, and whatever the client already got is dropped here, once it has
been checked to say what the client got: a retry that differs (sampling, another answer) ends
the request with a 502 rather than splicing two answers, and one that agrees goes on under the
first attempt's completion id. A reply that skips a number means replies were lost on the way:
the request ends with a 502, or a 503 (bus_restarted) when Redis came back empty meanwhile.

The reader trims its stream up to what it has read (in the same round trip as its next read)
and routers never trim it, so a gateway that lags loses no answer. Each turn also pushes back
the stream's expiry; the stream being gone means Redis restarted empty (or was flushed). Then,
and after any spell with Redis unreachable, the watcher checks that the request entries the
waiting requests were published as still exist: those that do not were lost with Redis and end
with a 503 at once. While Redis stays unreachable, a request that heard nothing for
bus.outage_grace_s ends with a 503 too.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from services.gateway.metrics import GatewayMetrics
from shared import bus
from shared.errors import ApiError, Unavailable, UpstreamFailed
from shared.keys import MESSAGE_FIELD, REQUEST_STREAM
from shared.messages import Reply, ReplyBatch, ReplyKind, WireError, decode, encode
from shared.supervise import Loops

log = structlog.get_logger(__name__)

READ_BLOCK_MS = 1000
READ_COUNT = 512
WATCH_INTERVAL_S = 0.25
# After a loss is suspected, routers still answering requests whose entries were lost get this
# long to have a reply through before those requests are checked (and ended if silent).
VERIFY_DELAY_S = 0.5
READER, WATCHER = "replies", "replies_watch"
# A retry shorter than the attempt the client already saw must still be able to finish it.
_TERMINAL = frozenset({ReplyKind.COMPLETION, ReplyKind.ERROR, ReplyKind.END})
_CHECKED = frozenset({ReplyKind.HEAD, ReplyKind.CHUNK})  # what a retry is held to


@dataclass
class Waiter:
    queue: asyncio.Queue[Reply] = field(default_factory=asyncio.Queue)
    last_seq: int = 0
    entry_id: bytes | None = None  # the request's entry on the request stream, once published
    heard: float = field(default_factory=time.monotonic)  # the last reply (or the publish)
    forwarded: dict[int, Reply] = field(default_factory=dict)  # head and chunks by seq, to check a retry by
    retried: bool = False  # a replacement router's attempt is under way
    since: float = field(default_factory=time.monotonic)  # when the request began waiting


@dataclass
class ReplyReader:
    redis: Redis
    stream: str
    ttl_s: int = 300
    outage_grace_s: float = 3.0
    metrics: GatewayMetrics | None = None
    waiters: dict[str, Waiter] = field(default_factory=dict)
    _last_id: bytes = b"0-0"
    _trimmed: bytes = b"0-0"
    _created: bool = False
    _outage_since: float | None = None  # Redis unreachable since (monotonic)
    _suspect_since: float | None = None  # requests may have been lost: check that their entries still exist
    _recreated: float | None = None  # the latest time the reply stream had vanished and was made again

    def expect(self, request_id: str) -> Waiter:
        waiter = self.waiters[request_id] = Waiter()
        return waiter

    def forget(self, request_id: str) -> None:
        self.waiters.pop(request_id, None)

    def published(self, waiter: Waiter, entry_id: bytes) -> None:
        waiter.entry_id = entry_id
        waiter.heard = time.monotonic()

    def trouble(self, exc: RedisError) -> None:
        """A Redis call failed even after retries (here or in a request's publish)."""
        if isinstance(exc, ConnectionError | TimeoutError) and self._outage_since is None:
            self._outage_since = time.monotonic()
        self._suspect()

    def start(self, loops: Loops) -> None:
        loops.start(READER, self.read_step)
        loops.start(WATCHER, self.watch_step)

    async def run(self) -> None:
        """Read and watch until cancelled (the app runs them in its own Loops)."""
        loops = Loops()
        self.start(loops)
        try:
            await asyncio.gather(*loops.tasks.values())
        finally:
            await loops.cancel()

    async def read_step(self) -> None:
        trim_below = self._last_id if self._last_id != self._trimmed else None
        try:
            exists, entries = await bus.read_own(self.redis, self.stream, self._last_id, READ_COUNT, READ_BLOCK_MS,
                                                 self.ttl_s, trim_below)
        except RedisError as exc:
            self.trouble(exc)
            raise
        if trim_below is not None:
            self._trimmed = trim_below
        self._outage_since = None
        if not exists:
            await self._create()
        now = time.monotonic()
        for entry_id, raw in entries:
            self._last_id = entry_id
            self._dispatch(raw, now)
        # Let the woken requests answer their clients before the next read is sent.
        await asyncio.sleep(0)

    async def watch_step(self) -> None:
        await asyncio.sleep(WATCH_INTERVAL_S)
        if self._outage_since is not None:
            if time.monotonic() - self._outage_since >= self.outage_grace_s:
                self._end_quiet()
        elif self._suspect_since is not None and time.monotonic() - self._suspect_since >= VERIFY_DELAY_S:
            await self._verify(self._suspect_since)

    async def open(self) -> None:
        """Create the stream before the first request is published (the reader does it otherwise)."""
        await self._create()

    async def _create(self) -> None:
        """Start the stream with an empty batch, so that its absence later means it was lost
        (routers write to it but never create it)."""
        if self._created:
            log.warning("reply stream vanished (Redis restarted or was flushed); checking waiting requests")
            self._recreated = time.monotonic()
            self._suspect()
        self._last_id = self._trimmed = b"0-0"  # whatever the new stream holds is new
        await self.redis.xadd(self.stream, {MESSAGE_FIELD: encode(ReplyBatch(replies=[]))})
        await self.redis.expire(self.stream, self.ttl_s)
        self._created = True

    def _suspect(self) -> None:
        if self._suspect_since is None:
            self._suspect_since = time.monotonic()

    async def _verify(self, since: float) -> None:
        """End the requests whose entries Redis no longer has and that heard nothing since the loss
        was suspected: no router will ever answer them."""
        self._suspect_since = None
        waiting = [(request_id, waiter) for request_id, waiter in self.waiters.items()
                   if waiter.entry_id and waiter.heard < since]
        if not waiting:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for _, waiter in waiting:
                    pipe.xrange(REQUEST_STREAM, waiter.entry_id, waiter.entry_id)
                found = await pipe.execute()
        except RedisError as exc:
            self._suspect_since = since
            self.trouble(exc)
            raise
        lost = [(request_id, waiter) for (request_id, waiter), entries in zip(waiting, found, strict=True)
                if not entries and self.waiters.get(request_id) is waiter]
        if lost:
            log.warning("Redis lost requests in flight; answering them 503", count=len(lost))
        for request_id, waiter in lost:
            self._end(request_id, waiter, Unavailable(
                "The message bus (Redis) lost this request while it was being answered; try again.",
                code="bus_restarted"))

    def _end_quiet(self) -> None:
        """Redis is unreachable: end the requests that heard nothing for the grace period."""
        horizon = time.monotonic() - self.outage_grace_s
        quiet = [(request_id, waiter) for request_id, waiter in self.waiters.items() if waiter.heard <= horizon]
        if quiet:
            log.warning("Redis unreachable; answering waiting requests 503", count=len(quiet))
        for request_id, waiter in quiet:
            self._end(request_id, waiter, Unavailable(
                "The gateway lost contact with its message bus (Redis) while this request was being answered; "
                "try again shortly.", code="bus_unavailable"))

    def _end(self, request_id: str, waiter: Waiter, error: ApiError) -> None:
        """Answer a waiting request with an error of our own: it is the last reply it gets."""
        if self.metrics is not None:
            self.metrics.bus_failures.labels(error.code or "error").inc()
        waiter.queue.put_nowait(Reply(request_id=request_id, seq=waiter.last_seq + 1, kind=ReplyKind.ERROR,
                                      status=error.status, data=error.body()))
        self.forget(request_id)

    def _dispatch(self, raw: bytes, now: float) -> None:
        try:
            replies = [decode(Reply, item) for item in decode(ReplyBatch, raw).replies]
        except WireError as exc:
            log.error("undecodable reply", error=str(exc))
            return
        for reply in replies:
            self._deliver(reply, now)

    def _deliver(self, reply: Reply, now: float) -> None:
        waiter = self.waiters.get(reply.request_id)
        if waiter is None:
            return
        if reply.seq <= waiter.last_seq:
            if reply.kind != ReplyKind.ERROR and not _agrees(waiter.forwarded.get(reply.seq), reply):
                log.error("a retry's answer differs from the one being streamed", request_id=reply.request_id,
                          seq=reply.seq)
                self._end(reply.request_id, waiter, UpstreamFailed(
                    "The router answering this request failed mid-answer and its replacement's answer differs "
                    "from what was already sent; try again.", code="retry_diverged"))
                return
            waiter.retried = True
            if reply.kind not in _TERMINAL:
                return
        elif reply.seq > waiter.last_seq + 1:
            log.error("replies lost before the gateway read them", request_id=reply.request_id,
                      expected=waiter.last_seq + 1, got=reply.seq)
            if self._recreated is not None and self._recreated >= waiter.since:
                # Redis came back empty while this answer streamed: the bus lost them, as it lost requests.
                self._end(reply.request_id, waiter, Unavailable(
                    "The message bus (Redis) restarted and lost part of this answer; try again.",
                    code="bus_restarted"))
            else:
                self._end(reply.request_id, waiter, UpstreamFailed(
                    "Part of the answer was lost on its way back through the message bus; try again.",
                    code="reply_lost"))
            return
        waiter.last_seq = max(waiter.last_seq, reply.seq)
        waiter.heard = now
        if reply.kind in _CHECKED:
            if waiter.retried:
                _as_first_attempt(waiter, reply)
            waiter.forwarded[reply.seq] = reply
        waiter.queue.put_nowait(reply)
        if reply.kind == ReplyKind.END:
            self.forget(reply.request_id)


def _agrees(sent: Reply | None, retry: Reply) -> bool:
    """Does a retry's reply say what the client already got under the same sequence number?"""
    if sent is None or sent.kind != retry.kind:
        return False
    if sent.kind == ReplyKind.HEAD:
        return (sent.decision, sent.tier) == (retry.decision, retry.tier)
    return _said(sent.data) == _said(retry.data)


def _said(chunk: dict | None) -> list[tuple]:
    """What a chunk tells the client, without what differs between two calls (id, created, usage)."""
    return [(c.get("index"), c.get("delta"), c.get("finish_reason")) for c in (chunk or {}).get("choices") or ()]


def _as_first_attempt(waiter: Waiter, reply: Reply) -> None:
    """A retry's new chunk goes out under the completion id (and time) of the chunks before it."""
    first = next((r.data for r in waiter.forwarded.values() if r.kind == ReplyKind.CHUNK and r.data), None)
    if first is not None and reply.data is not None:
        for key in ("id", "created"):
            if key in first:
                reply.data[key] = first[key]
