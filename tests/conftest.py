"""Fixtures that start real things: a private redis-server per test session."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from redis.asyncio import Redis

from tests.support import free_port


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A redis-server on a free port, nothing persisted; yields its base URL."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server must be installed (make test installs it)"
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="draftgate-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """A clean database 0 for each test (stacks of services use databases 1-15)."""
    redis.Redis.from_url(f"{redis_server}/0").flushdb()
    return f"{redis_server}/0"


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()
