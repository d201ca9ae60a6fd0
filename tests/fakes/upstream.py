"""A fake OpenAI-compatible model API (drafter and heavyweight tiers) for tests and benchmarks.

`FakeUpstream` serves in its own thread with its own event loop, so sync tests, async tests,
service subprocesses and benchmarks can all point an `openai` client at `fake.url`.
`python -m tests.fakes.upstream` runs the same server standalone for benchmarks and manual runs.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from collections.abc import Callable
from types import TracebackType

import uvloop
from aiohttp import web

from shared.service import tune_gc
from tests.fakes.scripts import Script
from tests.fakes.server import start_runner
from tests.fakes.state import Seen, State

__all__ = ["FakeUpstream", "Seen"]


class FakeUpstream:
    """An OpenAI-compatible server on 127.0.0.1:<free port>, scripted per test, recording every request."""

    def __init__(self, default: Script | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self._state = State(default)
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> FakeUpstream:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake upstream did not start within 10 s")
        if failure:
            raise RuntimeError("fake upstream failed to start") from failure[0]
        return self

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            self._runner, port = loop.run_until_complete(start_runner(self._state, self._host, self._port))
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        self.url = f"http://{self._host}:{port}/v1"
        ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        """scheme://host:port without /v1: the base URL of the native Anthropic and Gemini routes."""
        return self.url.removesuffix("/v1")

    def script(self, match: str, script: Script) -> None:
        """Requests whose last user message contains `match` get `script` (the latest registration wins)."""
        self._state.add_prompt_rule(match, script)

    def script_model(self, model: str, script: Script) -> None:
        """Requests for `model` get `script` unless a prompt rule matches."""
        self._state.add_model_rule(model, script)

    @property
    def seen(self) -> list[Seen]:
        return self._state.snapshot()

    def wait_for(self, predicate: Callable[[list[Seen]], bool], timeout_s: float = 10) -> list[Seen]:
        """Poll the record until `predicate` holds; handlers finish asynchronously to the client."""
        deadline = time.monotonic() + timeout_s
        while True:
            seen = self.seen
            if predicate(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"fake upstream: condition not met within {timeout_s} s; saw {seen!r}")
            time.sleep(0.01)

    def reset(self) -> None:
        """Forget every request and rule; the default script stays."""
        self._state.reset()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="0 = no delay between tokens")
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--entropy", type=float, default=0.05, help="bits per token of the default answer")
    parser.add_argument("--uncertain-marker", default=None, help="prompts containing it get the uncertain answer")
    parser.add_argument("--uncertain-bits", type=float, default=3.0)
    parser.add_argument("--tick-ms", type=float, default=0.0,
                        help="send tokens due within this many ms together (fewer writes under load)")
    return parser.parse_args(argv)


def cli_state(args: argparse.Namespace) -> State:
    words = ["The" if i == 0 else f" word{i}" for i in range(args.tokens)]
    timing = {"ttft_s": args.ttft_ms / 1000, "tokens_per_s": args.tokens_per_s or None}
    state = State(Script(tokens=words, entropies=[args.entropy] * len(words), **timing), tick_s=args.tick_ms / 1000)
    if args.uncertain_marker:
        state.add_prompt_rule(args.uncertain_marker,
                              Script(tokens=words, entropies=[args.uncertain_bits] * len(words), **timing))
    return state


async def serve_until_signalled(state: State, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve `state` in this process until SIGTERM/SIGINT; the first stdout line gives the URL."""
    runner, port = await start_runner(state, host, port)
    print(f"listening http://{host}:{port}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    # Served like draftgate's own services, so a benchmark's stand-in API takes little of the CPU.
    tune_gc()
    uvloop.run(serve_until_signalled(cli_state(args), args.host, args.port))


if __name__ == "__main__":
    main()
