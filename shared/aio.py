"""asyncio helpers for long-lived loops that retry on errors."""

from __future__ import annotations

import asyncio


def being_cancelled() -> bool:
    """True while the current task is being cancelled.

    redis-py can absorb a cancellation that lands mid-command (it drops the connection and
    the call returns or raises a RedisError), so a loop around blocking reads must test this
    on every turn, or it swallows its own shutdown and runs forever.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stop(task: asyncio.Task[object], timeout_s: float) -> bool:
    """Cancel a background task and wait for it at most timeout_s; False if it is still running
    (a task that absorbed its cancellation must not hold a shutdown up for ever)."""
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=timeout_s)
    return bool(done)
