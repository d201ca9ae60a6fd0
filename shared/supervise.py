"""Supervised background loops: a loop is a step run over and over; a step that fails is
logged and retried with backoff instead of ending the loop, and the loop reports itself down
until a step succeeds again, so /ready can tell.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from redis.exceptions import RedisError

from shared.aio import being_cancelled

log = structlog.get_logger(__name__)

Step = Callable[[], Awaitable[None]]

BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 5.0
# A lost connection is an outage to wait out, not a bug: no traceback for these.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)


def backoff_s(failures: int) -> float:
    """Exponential from BACKOFF_BASE_S, capped, with jitter so restarted services do not retry in step."""
    delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(failures - 1, 0))
    return delay * random.uniform(0.8, 1.2)


@dataclass
class LoopState:
    name: str
    essential: bool
    up: bool = True  # until a step fails: a loop is innocent when started
    failures: int = 0  # consecutive failed steps
    failed_total: int = 0
    last_error: str | None = None
    stopping: bool = False


@dataclass
class Loops:
    """The supervised loops of one process."""

    states: dict[str, LoopState] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def start(self, name: str, step: Step, *, essential: bool = True) -> asyncio.Task[None]:
        state = self.states[name] = LoopState(name, essential)
        task = self.tasks[name] = asyncio.create_task(_run(state, step), name=f"loop:{name}")
        return task

    def up(self, name: str) -> bool:
        state = self.states.get(name)
        return state is not None and state.up and not self.tasks[name].done()

    def down(self) -> list[str]:
        """The essential loops not running right now."""
        return [name for name, state in self.states.items() if state.essential and not self.up(name)]

    def report(self) -> dict[str, bool]:
        return {name: self.up(name) for name in self.states}

    def finish(self, name: str) -> None:
        """Let the loop end after its current step (a cooperative stop, unlike cancel)."""
        self.states[name].stopping = True

    async def wait(self, name: str) -> None:
        await asyncio.gather(self.tasks[name], return_exceptions=True)

    async def cancel(self, *names: str) -> None:
        tasks = [self.tasks[name] for name in names or list(self.tasks)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _run(state: LoopState, step: Step) -> None:
    # redis-py can absorb a cancellation mid-command, hence being_cancelled() on every turn.
    while not state.stopping and not being_cancelled():
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state.up = False
            state.failures += 1
            state.failed_total += 1
            state.last_error = repr(exc)
            delay = backoff_s(state.failures)
            if isinstance(exc, EXPECTED_ERRORS):
                log.warning("loop step failed; retrying", loop=state.name, error=repr(exc), retry_in_s=round(delay, 2),
                            failures=state.failures)
            else:
                log.exception("loop step crashed; restarting it", loop=state.name, retry_in_s=round(delay, 2),
                              failures=state.failures)
            await asyncio.sleep(delay)
            continue
        if not state.up:
            log.info("loop recovered", loop=state.name, after_failures=state.failures)
        state.up = True
        state.failures = 0
