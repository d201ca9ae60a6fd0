"""Integration fixtures: a shared fake upstream and a default draftgate stack per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, start_stack

DEFAULT_ANSWER = "Paris is the capital of France."


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(default=confident(DEFAULT_ANSWER)) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(redis_server, tmp_path_factory.mktemp("stack"), fake)
    yield running
    running.stop()


@pytest.fixture
async def routers(redis_url: str) -> AsyncIterator[tuple[Redis, Redis]]:
    """Two Redis connections, as two router processes have (the rate-limit tests)."""
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    yield first, second
    await first.aclose()
    await second.aclose()


@pytest.fixture(autouse=True)
def _fresh_fake(request: pytest.FixtureRequest) -> None:
    """Each test scripts the shared fake anew and reads only what it saw itself."""
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()
