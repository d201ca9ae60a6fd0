"""Consumer-group loop: read requests, answer each in its own task, ack when written,
keep in-flight entries claimed, reclaim the ones dead routers left, heartbeat, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from services.router.drafting import RoutingContext, answer
from services.router.replies import ReplyWriter
from shared import bus
from shared.aio import being_cancelled
from shared.config import BusConfig
from shared.errors import error_body
from shared.keys import CANCEL_CHANNEL, REQUEST_STREAM, ROUTER_GROUP, ROUTERS_ALIVE
from shared.messages import Cancel, ChatRequest, WireError, decode

log = structlog.get_logger(__name__)

READ_BLOCK_MS = 1000
RETRY_PAUSE_S = 0.5


@dataclass
class InFlight:
    entry_id: bytes
    task: asyncio.Task[None]
    client_gone: bool = False


@dataclass
class Worker:
    redis: Redis
    ctx: RoutingContext
    config: BusConfig
    consumer: str
    max_in_flight: int
    in_flight: dict[str, InFlight] = field(default_factory=dict)
    stopping: bool = False
    _slot_freed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        await bus.ensure_group(self.redis, REQUEST_STREAM, ROUTER_GROUP)
        await asyncio.gather(self._read_loop(), self._reclaim_loop(), self._heartbeat_loop(),
                             self._cancel_loop())

    async def shutdown(self, grace_s: float) -> None:
        """Stop reading, let in-flight answers finish within the grace period, then cancel the
        rest: they stay pending and a live router reclaims them."""
        self.stopping = True
        tasks = [item.task for item in self.in_flight.values()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        with contextlib.suppress(RedisError):
            await self.redis.zrem(ROUTERS_ALIVE, self.consumer)

    async def _read_loop(self) -> None:
        while not self.stopping and not being_cancelled():
            free = self.max_in_flight - len(self.in_flight)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                entries = await bus.read_group(self.redis, REQUEST_STREAM, ROUTER_GROUP, self.consumer,
                                               count=min(free, 64), block_ms=READ_BLOCK_MS)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("consumer group vanished (Redis flushed?); recreating it")
                await bus.ensure_group(self.redis, REQUEST_STREAM, ROUTER_GROUP)
                continue
            except RedisError as exc:
                log.warning("reading requests failed", error=str(exc))
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            for entry_id, raw in entries:
                await self._start(entry_id, raw)
            # Let the new tasks send their upstream requests before the next read is sent.
            await asyncio.sleep(0)

    async def _reclaim_loop(self) -> None:
        while not self.stopping and not being_cancelled():
            await asyncio.sleep(self.config.reclaim_interval_ms / 1000)
            try:
                await bus.keep_claimed(self.redis, REQUEST_STREAM, ROUTER_GROUP, self.consumer,
                                       [item.entry_id for item in self.in_flight.values()])
                free = self.max_in_flight - len(self.in_flight)
                if free <= 0 or self.stopping:
                    continue
                entries = await bus.reclaim(self.redis, REQUEST_STREAM, ROUTER_GROUP, self.consumer,
                                            self.config.reclaim_idle_ms, count=free)
            except RedisError as exc:
                log.warning("reclaiming failed", error=str(exc))
                continue
            for entry_id, raw in entries:
                self.ctx.metrics.reclaimed.inc()
                log.info("reclaimed a request from a silent router", entry_id=entry_id.decode())
                await self._start(entry_id, raw)

    async def _heartbeat_loop(self) -> None:
        while not self.stopping and not being_cancelled():
            try:
                now = time.time()
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.zadd(ROUTERS_ALIVE, {self.consumer: now})
                    pipe.zremrangebyscore(ROUTERS_ALIVE, "-inf", now - 3600)
                    await pipe.execute()
            except RedisError as exc:
                log.warning("heartbeat failed", error=str(exc))
            await asyncio.sleep(self.config.router_heartbeat_s)

    async def _cancel_loop(self) -> None:
        """Clients that went away: their gateway publishes a Cancel; whoever holds it stops."""
        async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(CANCEL_CHANNEL)
            while not self.stopping and not being_cancelled():
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                try:
                    request_id = decode(Cancel, message["data"]).request_id
                except WireError as exc:
                    log.warning("bad cancel message", error=str(exc))
                    continue
                item = self.in_flight.get(request_id)
                if item is not None:
                    item.client_gone = True
                    item.task.cancel()

    async def _start(self, entry_id: bytes, raw: bytes) -> None:
        try:
            request = decode(ChatRequest, raw)
        except WireError as exc:
            log.error("dropping undecodable request", entry_id=entry_id.decode(), error=str(exc))
            await bus.ack(self.redis, REQUEST_STREAM, ROUTER_GROUP, entry_id)
            return
        if request.request_id in self.in_flight:
            return
        if request.deadline and time.time() > request.deadline:
            log.info("dropping expired request", request_id=request.request_id)
            await bus.ack(self.redis, REQUEST_STREAM, ROUTER_GROUP, entry_id)
            return
        task = asyncio.create_task(self._handle(entry_id, request))
        self.in_flight[request.request_id] = InFlight(entry_id, task)
        self.ctx.metrics.in_flight.inc()

    async def _handle(self, entry_id: bytes, request: ChatRequest) -> None:
        out = ReplyWriter(self.redis, request.reply_to, request.request_id, self.config.reply_stream_maxlen,
                          self.config.reply_stream_ttl_s, ack=bus.Ack(REQUEST_STREAM, ROUTER_GROUP, entry_id))
        structlog.contextvars.bind_contextvars(request_id=request.request_id)
        try:
            await answer(self.ctx, request, out)
        except asyncio.CancelledError:
            if not self.in_flight[request.request_id].client_gone:
                raise
            log.info("client went away, upstream calls cancelled")
        except Exception:
            log.exception("request failed")
            await self._send_server_error(out)
        finally:
            self.in_flight.pop(request.request_id, None)
            self.ctx.metrics.in_flight.dec()
            self._slot_freed.set()
        if not out.acked:
            await bus.ack(self.redis, REQUEST_STREAM, ROUTER_GROUP, entry_id)

    async def _send_server_error(self, out: ReplyWriter) -> None:
        body = error_body("The router had an error while processing your request.", "server_error")
        try:
            await out.finish(out.error(500, body))
        except RedisError:
            log.warning("could not report the failure to the gateway")
