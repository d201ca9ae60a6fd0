"""The one way every service opens Redis: pooled, with timeouts and redis-py's own retries.

A pooled connection that a restarted (or CLIENT KILLed) server closed fails on its next use;
redis-py then reconnects and re-sends the command (or the whole pipeline) with exponential
backoff instead of surfacing the error. Re-sending is safe for what the services write:
replies are deduplicated by sequence number, XACK, EXPIRE and SET are idempotent, and a
cache write stored twice is stored once. Only a failure that outlasts the retries (Redis
down for longer than about a second) reaches the caller, which degrades: 503, a cache
miss, a paused loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import hiredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, ResponseError, TimeoutError
from redis.typing import EncodableT

from shared.config import RedisConfig

RETRY_BASE_S = 0.05  # waits 0.1, 0.2, 0.4, 0.5 s...: a local restart is usually over in that time
RETRY_CAP_S = 0.5
CONNECT_TIMEOUT_S = 1.0
# An idle pooled connection is PINGed before reuse after this long: a cheap early notice of a
# server that went away, while busy connections pay nothing.
HEALTH_CHECK_INTERVAL_S = 30


def connect(config: RedisConfig) -> Redis:
    """A client for config.url; socket_timeout_s must stay above every blocking read (1 s)."""
    client = Redis.from_url(
        config.url,
        retry=Retry(ExponentialBackoff(cap=RETRY_CAP_S, base=RETRY_BASE_S), config.retries),
        retry_on_error=[ConnectionError, TimeoutError],
        socket_timeout=config.socket_timeout_s,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
    )
    # The pool makes its connections when first asked: none exists yet to be of the old class.
    pool = client.connection_pool
    pool.connection_class = PACKED_BY_HIREDIS.get(pool.connection_class, pool.connection_class)
    return client


Command = tuple[EncodableT, ...]  # a command's name and arguments, as Redis takes them
T = TypeVar("T")


async def pipelined(redis: Redis, commands: Sequence[Command], raise_on_error: bool = False) -> list[Any]:
    """`commands` in one round trip on one of the client's pooled connections, without redis-py's
    Pipeline: each reply as the server sent it (no response callbacks: EXPIRE gives 1 or 0, LTRIM
    b"OK", XREAD lists of lists), an error reply as its ResponseError in its place, or, with
    `raise_on_error`, the first of them raised once every command has run (as `Pipeline.execute` has it).
    redis-py's retries apply as to a pipeline: a connection that failed is dropped and everything is
    sent again on a new one.

    For the hot paths (a router's replies, a gateway's reads): redis-py's Pipeline costs about 6 us of
    Python per command beyond this (its command stack, response callbacks, field-set and
    observability hooks); measured with bench/edge.py and bench/peers.py."""
    pool = redis.connection_pool
    connection = await pool.get_connection()
    try:
        replies = await connection.retry.call_with_retry(lambda: _round_trip(connection, commands),
                                                         lambda _error: connection.disconnect())
    finally:
        await pool.release(connection)
    if raise_on_error:
        refused = next((reply for reply in replies if isinstance(reply, ResponseError)), None)
        if refused is not None:
            raise refused
    return replies


async def _round_trip(connection: AbstractConnection, commands: Sequence[Command]) -> list[Any]:
    await connection.send_packed_command(connection.pack_commands(commands))
    return [await _reply(connection) for _ in commands]


async def _reply(connection: AbstractConnection) -> Any:
    """The next reply (a refusal as its ResponseError): taken from what the connection's hiredis parser
    already holds when it is whole there, as a pipeline's later replies mostly are (they came in the read
    of the first), else read as redis-py reads one (its timeout, its handling of a lost connection). The
    first way skips redis-py's per-reply timeout and checks: about 5 us of client CPU a reply (a 6-command
    pipeline against a local Redis: 99 against 125 us). What redis-py would raise is raised, the
    connection dropped; a push message (RESP3: an invalidation, a maintenance notice) goes to redis-py's
    handler and the reply after it is taken, as redis-py does. It reads redis-py's parser (private names,
    redis pinned in requirements.txt): if an upgrade renames them, every reply takes the library's way and
    tests/integration/test_redis_client.py's one-read test fails."""
    parser = connection._parser
    if isinstance(parser, _AsyncHiredisParser) and parser._connected:
        push = parser._hiredis_PushNotificationType
        while (reply := parser._reader.gets()) is not NOT_ENOUGH_DATA:
            if push is not None and isinstance(reply, push):
                await parser.handle_push_response(reply)
                continue
            failed = reply if isinstance(reply, ConnectionError) else (
                reply[0] if isinstance(reply, list) and reply and isinstance(reply[0], ConnectionError) else None)
            if failed is not None:
                await connection.disconnect(nowait=True)
                raise failed
            return reply
    try:
        return await connection.read_response()
    except ResponseError as exc:  # the server's refusal of this command; the others stand
        return exc


class Coalescer(Generic[T]):
    """What callers ask for in the same turn of the event loop, sent together in one round trip by `send`
    (a list of items -> their results, in order; an Exception among them is raised in its caller, as is
    what `send` raises in every caller). The first caller lets the turn's others join it (one yield), then
    sends them all; an item no other joined goes alone, from its caller. Under load a gateway's key
    admissions come many to a turn (at 32 clients in bench/edge.py, half of them in turns of 9 or more),
    and each paid the round trip's client work (the pooled connection's checkout, its send, its read and
    their timeouts) and Redis's work per command on its own.

    A batch goes from a task of its own, so a caller cancelled while it waits (its client left) cuts no
    other caller's round trip short: its item stays in the batch, sent, its result dropped, as a command
    already written to the socket would be. `drain()` waits for the batches under way (at shutdown)."""

    def __init__(self, send: Callable[[list[T]], Awaitable[list[Any]]]) -> None:
        self._send_items = send
        self._joining: list[tuple[T, asyncio.Future[Any]]] | None = None  # this turn's, once one waits
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, item: T) -> Any:
        if self._joining is not None:  # a caller is gathering this turn's items: join its round trip
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._joining.append((item, future))
            return await future
        self._joining = []
        try:
            await asyncio.sleep(0)  # the turn's other callers run up to their command and join
        except BaseException:  # cancelled: the others' round trip goes without this caller's item
            joined, self._joining = self._joining, None
            if joined:
                self._start(joined)
            raise
        joined, self._joining = self._joining, None
        if not joined:
            (result,) = await self._send_items([item])
            if isinstance(result, Exception):
                raise result
            return result
        own: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._start([(item, own), *joined])
        return await own

    def _start(self, batch: list[tuple[T, asyncio.Future[Any]]]) -> None:
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[T, asyncio.Future[Any]]]) -> None:
        try:
            results = await self._send_items([item for item, _ in batch])
        except Exception as exc:  # the round trip failed: every caller hears it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop is closing): so are the callers
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def drain(self) -> None:
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


class HiredisPacking(AbstractConnection):
    """Commands packed by hiredis, in C. redis-py's asyncio connections pack them in Python (its sync ones
    use hiredis): 15 us for the key script's 28 arguments against 2.3, 4 us for a reply's XADD against
    0.7 (tests/unit/test_redis_packing.py checks the bytes are the same). What hiredis does not take
    (bytearray, memoryview, a bool, an IntEnum) goes through redis-py's own encoder first, which refuses
    what redis-py refuses (DataError)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):  # "SCRIPT LOAD": the words of a command's name go as arguments
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            encode = self.encoder.encode
            return [hiredis.pack_command(tuple(bytes(arg) if isinstance(arg, bytearray | memoryview) else encode(arg)
                                               for arg in args))]


class PackedConnection(HiredisPacking, Connection):
    pass


class PackedSSLConnection(HiredisPacking, SSLConnection):
    pass


class PackedUnixDomainSocketConnection(HiredisPacking, UnixDomainSocketConnection):
    pass


PACKED_BY_HIREDIS: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: PackedConnection, SSLConnection: PackedSSLConnection,
    UnixDomainSocketConnection: PackedUnixDomainSocketConnection,
}
