"""Supervised loops: a failing step is retried with backoff and the loop reports itself down
until a step succeeds again; a loop is stopped cooperatively or cancelled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from redis.exceptions import ConnectionError

from shared import supervise
from shared.supervise import Loops, backoff_s


def test_backoff_grows_exponentially_up_to_a_cap_with_jitter() -> None:
    first, second, late = backoff_s(1), backoff_s(2), backoff_s(50)
    assert 0.8 * supervise.BACKOFF_BASE_S <= first <= 1.2 * supervise.BACKOFF_BASE_S
    assert 1.6 * supervise.BACKOFF_BASE_S <= second <= 2.4 * supervise.BACKOFF_BASE_S
    assert late <= 1.2 * supervise.BACKOFF_CAP_S


async def wait_for(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervise, "BACKOFF_BASE_S", 0.001)
    monkeypatch.setattr(supervise, "BACKOFF_CAP_S", 0.01)


@pytest.mark.parametrize("error", [ValueError("a bug"), ConnectionError("Redis went away")])
async def test_a_failing_step_is_retried_and_the_loop_is_down_until_one_succeeds(error: Exception) -> None:
    failing = asyncio.Event()
    failing.set()
    turns = []

    async def step() -> None:
        turns.append(1)
        await asyncio.sleep(0.001)
        if failing.is_set():
            raise error

    loops = Loops()
    loops.start("essential", step)
    loops.start("optional", step, essential=False)
    await wait_for(lambda: loops.states["essential"].failures >= 2 and loops.states["optional"].failures >= 1)
    assert loops.down() == ["essential"] and not loops.up("optional")
    assert loops.states["essential"].last_error == repr(error)
    failing.clear()
    await wait_for(lambda: loops.up("essential") and loops.up("optional"))
    assert loops.down() == [] and loops.states["essential"].failures == 0
    assert loops.report() == {"essential": True, "optional": True}
    await loops.cancel()
    assert all(task.done() for task in loops.tasks.values())


async def test_a_finished_loop_ends_after_its_step_and_counts_as_down() -> None:
    turns = []

    async def step() -> None:
        turns.append(1)
        await asyncio.sleep(0.001)

    loops = Loops()
    loops.start("reader", step)
    await wait_for(lambda: len(turns) >= 2)
    loops.finish("reader")
    await loops.wait("reader")
    assert loops.tasks["reader"].done() and not loops.tasks["reader"].cancelled()
    assert loops.down() == ["reader"]
