"""Ctrl-C for the long calibration steps (collect, grade): the run stops within a bounded time, whatever
a call in flight does, and says so; what was already appended stays (jsonl.py flushes each line).

asyncio.run alone cancels the run on SIGINT and then waits for every task to finish. A call that does
not end when cancelled (an upstream holding its answer back while its client is being torn down) then
keeps the process alive for ever, and a loaded CI run once saw exactly that. Here the run is cancelled
at once and given INTERRUPT_GRACE_S to wind down; whatever is still running then is abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Coroutine
from typing import Any

INTERRUPT_GRACE_S = 5.0


def run_interruptibly(coro: Coroutine[Any, Any, None], grace_s: float = INTERRUPT_GRACE_S) -> None:
    """Run `coro` on a new event loop; KeyboardInterrupt once SIGINT has stopped it (at most grace_s
    after the signal). Other exceptions from `coro` propagate as they are."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(coro)
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            task.cancel()
            loop.call_later(grace_s, loop.stop)  # a run that does not wind down in time is left behind

    # Signals reach the main thread only (a run started from another thread, as in tests, has no Ctrl-C).
    handled = threading.current_thread() is threading.main_thread()
    if handled:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        with contextlib.suppress(asyncio.CancelledError, RuntimeError):  # RuntimeError: stopped by the grace
            loop.run_until_complete(task)
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        if interrupted:
            raise KeyboardInterrupt
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)
        _abandon(loop)


def _abandon(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left and let it react for a moment, then close the loop (tasks still pending are
    dropped: the process is on its way out)."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=0.5))
    with contextlib.suppress(RuntimeError):
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
