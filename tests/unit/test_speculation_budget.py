"""The speculation budget comes back exactly once per speculation, however its task ends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.router.speculation import Speculation, SpeculationBudget
from services.router.upstream import Tier, create_tier
from services.router.upstreams.errors import UpstreamConnectError
from shared.config import UpstreamConfig
from tests.support import free_port

PARAMS = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.fixture
async def tier() -> AsyncIterator[Tier]:
    """A heavyweight on a port nobody listens on: a call fails at once with a refused connection."""
    tier = create_tier("heavyweight", UpstreamConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m",
                                                     timeout_s=5), {})
    yield tier
    await tier.client.close()


def started(tier: Tier, budget: SpeculationBudget) -> Speculation:
    assert budget.try_acquire()
    return Speculation(tier, PARAMS, budget)


async def test_a_speculation_cancelled_before_its_first_step_releases_the_budget(tier: Tier) -> None:
    budget = SpeculationBudget(limit=1)
    speculation = started(tier, budget)
    assert not speculation._task.done()  # created, never run: cancel() lands before its first step
    assert await speculation.cancel() == 0
    assert speculation._task.cancelled()
    assert budget.active == 0 and budget.try_acquire()


async def test_many_instant_cancels_never_exhaust_the_budget(tier: Tier) -> None:
    budget = SpeculationBudget(limit=2)
    for _ in range(10):
        await started(tier, budget).cancel()
    assert budget.active == 0


async def test_a_failed_speculation_releases_once_even_when_cancelled_afterwards(tier: Tier) -> None:
    budget = SpeculationBudget(limit=1)
    speculation = started(tier, budget)
    with pytest.raises(UpstreamConnectError):
        async for _ in speculation.follow():
            pass
    assert budget.active == 0
    await speculation.cancel()
    assert budget.active == 0
