"""The router's side of the bus: take requests from the consumer group, answer each in its own
task, ack when written, keep in-flight entries claimed, heartbeat, and stop work whose client
left. Every loop is supervised (shared.supervise): an error pauses it, never ends it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.router.answer import answer
from services.router.cancels import CancelListener
from services.router.drafting import RoutingContext
from services.router.replies import ReplyOverflow, ReplyWriter
from services.router.upstreams.pool import REQUEST_DEADLINE
from shared import bus
from shared.config import BusConfig
from shared.errors import Unavailable, error_body
from shared.keys import REQUEST_STREAM, ROUTER_GROUP, ROUTERS_ALIVE
from shared.messages import ChatRequest, WireError, decode
from shared.sessions import SessionSave, with_history
from shared.supervise import Loops

log = structlog.get_logger(__name__)

REQUESTS, KEEP_CLAIMED, HEARTBEAT, CANCELS = "requests", "keep_claimed", "heartbeat", "cancels"
ALIVE_HISTORY_S = 3600  # heartbeats older than this are removed from the alive set


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
    cancel_ttl_s: float  # how long a client's cancel is remembered: the gateway's request timeout
    in_flight: dict[str, InFlight] = field(default_factory=dict)
    stopping: bool = False
    loops: Loops = field(default_factory=Loops)
    requests: bus.Consumer = field(init=False)
    _turn_results: dict[str, Any] = field(init=False)  # session_turns' children, by result: looked up once
    cancels: CancelListener = field(init=False)

    def __post_init__(self) -> None:
        self.requests = bus.Consumer(
            self.redis, REQUEST_STREAM, ROUTER_GROUP, self.consumer, self._take,
            reclaim_idle_ms=self.config.reclaim_idle_ms, reclaim_interval_s=self.config.reclaim_interval_ms / 1000,
            capacity=lambda: self.max_in_flight - len(self.in_flight),
            owned=lambda: [item.entry_id for item in self.in_flight.values()])
        self.cancels = CancelListener(self.redis, self._cancel, self.cancel_ttl_s)
        self._turn_results = {name: self.ctx.metrics.session_turns.labels(name) for name in ("saved", "failed")}

    def start(self) -> None:
        self.loops.start(REQUESTS, self.requests.step)
        self.loops.start(KEEP_CLAIMED, self._keep_claimed)
        self.loops.start(HEARTBEAT, self._heartbeat)
        self.loops.start(CANCELS, self.cancels.step)

    async def shutdown(self, grace_s: float) -> None:
        """Stop reading (entries of the last read are handed back unrun), let in-flight answers
        finish within the grace period while still keeping them claimed, then cancel the rest and
        hand them back: a live router takes them over at its next reclaim pass."""
        self.stopping = self.requests.stopping = True
        self.loops.finish(REQUESTS)
        self.requests.wake()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.requests.block_ms / 1000 + 5):
                await self.loops.wait(REQUESTS)
        await self.loops.cancel(REQUESTS)
        await self._leave()
        if self.in_flight:
            _, late = await asyncio.wait([item.task for item in self.in_flight.values()], timeout=grace_s)
            unfinished = [item.entry_id for item in self.in_flight.values() if item.task in late]
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if unfinished:
                log.info("handing unfinished requests back", count=len(unfinished))
                with contextlib.suppress(RedisError):
                    await bus.hand_back(self.redis, REQUEST_STREAM, ROUTER_GROUP, self.consumer, unfinished)
        await self.loops.cancel()
        await self.cancels.close()

    async def _take(self, entries: list[bus.Entry], reclaimed: bool) -> None:
        """Start the requests just read or reclaimed, except those whose client already left, that
        expired, or that this router is already answering: those are acked unrun."""
        requests: list[tuple[bytes, ChatRequest]] = []
        dropped: list[bytes] = []
        for entry_id, raw in entries:
            try:
                # A request published by the key script: its session's turns still to prepend.
                requests.append((entry_id, with_history(decode(ChatRequest, raw))))
            except WireError as exc:
                log.error("dropping undecodable request", entry_id=entry_id.decode(), error=str(exc))
                dropped.append(entry_id)
        gone = await self.cancels.recorded(request.request_id for entry_id, request in requests
                                           if reclaimed or not self.cancels.covers(entry_id))
        now = time.time()
        for entry_id, request in requests:
            running = self.in_flight.get(request.request_id)
            if running is not None:
                if running.entry_id != entry_id:  # the same request published twice
                    dropped.append(entry_id)
                continue
            if request.request_id in gone or self.cancels.heard(request.request_id):
                log.info("dropping a request whose client already left", request_id=request.request_id)
                self.ctx.metrics.cancelled_before_start.inc()
                dropped.append(entry_id)
            elif request.deadline and now > request.deadline:
                log.info("dropping expired request", request_id=request.request_id)
                dropped.append(entry_id)
            else:
                if reclaimed:
                    self.ctx.metrics.reclaimed.inc()
                    log.info("reclaimed a request from a silent router", entry_id=entry_id.decode())
                self._start(entry_id, request)
        await bus.ack(self.redis, REQUEST_STREAM, ROUTER_GROUP, *dropped)
        # Let the requests just started send their upstream calls before the consumer loop re-issues its
        # blocking read: redis-py's work for that read is otherwise on every request's critical path.
        await asyncio.sleep(0)

    def _start(self, entry_id: bytes, request: ChatRequest) -> None:
        task = asyncio.create_task(self._handle(entry_id, request))
        self.in_flight[request.request_id] = InFlight(entry_id, task)
        self.ctx.metrics.in_flight.inc()

    async def _handle(self, entry_id: bytes, request: ChatRequest) -> None:
        REQUEST_DEADLINE.set(request.deadline)  # upstream retries stop there (this task's context only)
        out = ReplyWriter(self.redis, request.reply_to, request.request_id, self.config.reply_stream_maxlen,
                          self.config.reply_stream_ttl_s, ack=bus.Ack(REQUEST_STREAM, ROUTER_GROUP, entry_id),
                          coalesce_s=self.config.reply_coalesce_ms / 1000, **self._session_of(request))
        structlog.contextvars.bind_contextvars(request_id=request.request_id)
        try:
            await answer(self.ctx, request, out)
        except asyncio.CancelledError:
            if not self.in_flight[request.request_id].client_gone:
                raise
            log.info("client went away, upstream calls cancelled")
        except RedisError as exc:
            # The bus failed under us even after redis-py's retries. Not the client's fault and not
            # a 500: the entry stays pending, so a router retries it (before its deadline) once Redis
            # is back, and the gateway, which sees the outage too, answers 503 if that takes too long.
            self.ctx.metrics.bus_errors.inc()
            log.warning("could not write the answer to Redis; leaving the request pending", error=repr(exc))
            return
        except bus.StreamGone:
            # Its gateway is gone (its stream expired) and nobody can get this answer: drop it.
            log.info("the gateway's reply stream is gone; dropping the answer")
        except ReplyOverflow as exc:
            self.ctx.metrics.reply_overflows.inc()
            log.warning("the gateway is not reading its replies; stopping this answer", error=str(exc))
            await self._finish_with(out, Unavailable("The gateway fell too far behind reading its answers; "
                                                     "try again shortly.", code="reply_overflow"))
        except Exception:
            log.exception("request failed")
            await self._finish_with(out, None)
        finally:
            out.abandon()
            self.in_flight.pop(request.request_id, None)
            self.ctx.metrics.in_flight.dec()
            self.requests.wake()
        if not out.acked:
            with contextlib.suppress(RedisError):
                await bus.ack(self.redis, REQUEST_STREAM, ROUTER_GROUP, entry_id)

    def _session_of(self, request: ChatRequest) -> dict[str, Any]:
        """A session's request: the ReplyWriter stores its turn with the answer's last replies."""
        if request.session is None:
            return {}
        try:
            saving = SessionSave.from_wire(request.session)
        except ValueError as exc:
            log.warning("the request's session cannot be stored", error=str(exc))
            return {}
        messages = request.body.get("messages")
        return {"session": saving, "messages": messages if isinstance(messages, list) else [],
                "turn_saved": self._turn_saved}

    def _turn_saved(self, result: str) -> None:
        """ReplyWriter's turn_saved: saved | failed, counted."""
        self._turn_results[result].inc()

    async def _finish_with(self, out: ReplyWriter, error: Unavailable | None) -> None:
        """End the answer with an error the gateway passes on; None: the router's own failure."""
        status, body = ((error.status, error.body()) if error is not None else
                        (500, error_body("The router had an error while processing your request.", "server_error")))
        try:
            await out.finish(out.error(status, body))
        except RedisError as exc:
            log.warning("could not report the failure to the gateway", error=repr(exc))

    def _cancel(self, request_id: str) -> bool:
        """A client left: stop its request if it runs here."""
        item = self.in_flight.get(request_id)
        if item is None:
            return False
        item.client_gone = True
        item.task.cancel()
        return True

    async def _keep_claimed(self) -> None:
        """Every reclaim interval, reset the idle time of the entries still being answered (also
        while draining), so no other router takes over a request that is still running here."""
        await asyncio.sleep(self.config.reclaim_interval_ms / 1000)
        await bus.keep_claimed(self.redis, REQUEST_STREAM, ROUTER_GROUP, self.consumer,
                               [item.entry_id for item in self.in_flight.values()])

    async def _heartbeat(self) -> None:
        """Beat only while the request loop is up: a router that cannot take work is not alive."""
        if self.stopping or not self.loops.up(REQUESTS):
            await self._leave()
        else:
            now = time.time()
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(ROUTERS_ALIVE, {self.consumer: now})
                pipe.zremrangebyscore(ROUTERS_ALIVE, "-inf", now - ALIVE_HISTORY_S)
                await pipe.execute()
        await asyncio.sleep(self.config.router_heartbeat_s)

    async def _leave(self) -> None:
        with contextlib.suppress(RedisError):
            await self.redis.zrem(ROUTERS_ALIVE, self.consumer)
