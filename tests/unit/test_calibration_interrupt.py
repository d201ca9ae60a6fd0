"""Ctrl-C stops a calibration run in bounded time, even when a call in flight ignores its cancellation
(services/router/calibration/interrupt.py); a run that ends, or fails, does so as asyncio.run would."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from services.router.calibration.interrupt import run_interruptibly


def test_ctrl_c_stops_a_run_whose_call_ignores_its_cancellation() -> None:
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGINT)
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:  # a call that does not end when cancelled
                cancels += 1

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_interruptibly(stubborn(), grace_s=0.5)
    assert time.monotonic() - started < 3  # the 10 s sleeps were not waited out
    assert cancels >= 1


def test_ctrl_c_cancels_a_well_behaved_run_at_once() -> None:
    async def polite() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        await asyncio.sleep(30)

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_interruptibly(polite(), grace_s=20)
    assert time.monotonic() - started < 3


def test_a_run_that_ends_returns_and_its_error_propagates() -> None:
    done: list[str] = []

    async def works() -> None:
        await asyncio.sleep(0)
        done.append("yes")

    async def fails() -> None:
        raise ValueError("refused")

    run_interruptibly(works())
    assert done == ["yes"]
    with pytest.raises(ValueError, match="refused"):
        run_interruptibly(fails())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C is Python's again
