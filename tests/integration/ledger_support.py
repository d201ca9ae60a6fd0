"""Helpers for the ledger's tests: a PostgreSQL database made and dropped per use, a TCP proxy the
test can cut to make that database unreachable, the ledger service, and real records."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

from shared.keys import FEEDBACK_STREAM, LEDGER_GROUP, LEDGER_STREAM, MESSAGE_FIELD
from shared.messages import Feedback, LedgerRecord, encode
from tests.support import Service, free_port

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


def pg_url(database: str, port: int = PG_PORT) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{port}/{database}"


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL (trust auth); dropped afterwards. Yields its name."""
    name = f"ledger_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def pg_rows(database: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


@dataclass
class TcpProxy:
    """127.0.0.1:<port> forwarded to a target; `cut()` closes the listener and every connection (the
    target unreachable: connections refused), `restore()` listens again on the same port."""

    target: tuple[str, int]
    port: int = field(default_factory=free_port)
    _listener: socket.socket | None = None
    _conns: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def restore(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def start_ledger(redis_url: str, database_url: str, logs: Path, **env: str) -> Service:
    port = free_port()
    return Service("services.ledger", {
        "DRAFTGATE_REDIS_URL": redis_url, "DRAFTGATE_LEDGER_PORT": str(port),
        "DRAFTGATE_LEDGER_DATABASE_URL": database_url, "DRAFTGATE_LOGGING_LEVEL": "info",
        # A killed ledger's pending entries are taken over quickly by the next one.
        "DRAFTGATE_BUS_RECLAIM_IDLE_MS": "1000", "DRAFTGATE_BUS_RECLAIM_INTERVAL_MS": "200", **env,
    }, port, logs / f"ledger-{port}.log").start(timeout_s=60)


def wait_for(condition: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        time.sleep(0.05)


def analytics(ledger: Service, **params: str) -> dict[str, Any]:
    response = httpx.get(f"{ledger.url}/analytics", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def requests_counted(ledger: Service, expected: int) -> Callable[[], bool]:
    def counted() -> bool:
        response = httpx.get(f"{ledger.url}/analytics", timeout=10)
        return response.status_code == 200 and response.json()["totals"]["requests"] == expected
    return counted


def record(index: int, *, at: float, tenant: str = "t", key_id: str = "k", template_id: str = "",
           request_id: str | None = None) -> LedgerRecord:
    """A finished request as the gateway reports it: a draft accepted (even indices) or a draft
    aborted and escalated to the heavyweight (odd), priced, with a latency of `index` ms."""
    draft = {"tier": "drafter", "deployment": "small-a", "model": "small", "prompt_tokens": 10,
             "completion_tokens": 5, "role": "draft", "cost_usd": 0.0001}
    calls = [draft]
    if index % 2:
        calls = [{**draft, "role": "aborted_draft", "completion_tokens": 2},
                 {"tier": "heavyweight", "deployment": "big-a", "model": "big", "prompt_tokens": 10,
                  "completion_tokens": 20, "role": "answer", "cost_usd": 0.003}]
    cost = sum(call["cost_usd"] for call in calls)
    return LedgerRecord(request_id=request_id or f"req-{index}", time=at, key_id=key_id, tenant=tenant,
                        template_id=template_id, model="auto", status=200 if index % 5 else 429,
                        decision="escalate" if index % 2 else "accept", tier="heavyweight" if index % 2 else "drafter",
                        account={"calls": calls, "cost_usd": cost, "baseline_usd": 0.004},
                        latency_ms=float(index), ttft_ms=float(index) / 2, cache="miss")


def publish(redis_url: str, *messages: LedgerRecord | Feedback | bytes) -> None:
    client = redis.Redis.from_url(redis_url)
    with client.pipeline(transaction=False) as pipe:
        for message in messages:
            payload = message if isinstance(message, bytes) else encode(message)
            stream = FEEDBACK_STREAM if isinstance(message, Feedback) else LEDGER_STREAM
            pipe.xadd(stream, {MESSAGE_FIELD: payload})
        pipe.execute()


def pending(redis_url: str, stream: str = LEDGER_STREAM) -> int:
    """Entries read by a ledger and not acknowledged yet (0 before any ledger made the group)."""
    try:
        return int(redis.Redis.from_url(redis_url).xpending(stream, LEDGER_GROUP)["pending"])
    except redis.ResponseError as exc:
        if "NOGROUP" in str(exc):
            return 0
        raise
