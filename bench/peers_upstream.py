"""The fake upstream of `bench.peers`: `python -m bench.peers_upstream [--tokens 16]`.

The same answer as `python -m tests.fakes.upstream --tokens 16` ("The word1 ... word15", every token
sure of itself, no delay), served to every proxy under test from one process. It keeps no record
of each request (over tens of thousands the record would cost the fake more than answering), only
how many calls it got per model, streamed or not and with log-probs asked or not, at
`GET /counts`: the benchmark checks that every proxy made exactly one upstream call per request.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections import Counter
from typing import Any

import uvloop
from aiohttp import web

from shared.service import tune_gc
from tests.fakes.scripts import Script
from tests.fakes.server import create_app
from tests.fakes.state import Seen, State

ANSWER_TOKENS = 16
SURE_BITS = 0.05


def answer_words(tokens: int) -> list[str]:
    """The words of the answer, as tests.fakes.upstream's command line makes them."""
    return ["The" if i == 0 else f" word{i}" for i in range(tokens)]


def call_key(model: str, stream: bool, logprobs: bool) -> str:
    """How /counts names one kind of call: `fake-drafter stream logprobs`, `fake-drafter plain`."""
    return " ".join([model, "stream" if stream else "plain", *(["logprobs"] if logprobs else [])])


class Counting(State):
    """Counts calls instead of recording them."""

    def __init__(self, default: Script) -> None:
        super().__init__(default)
        self.counts: Counter[str] = Counter()

    def record(self, model: str, body: dict[str, Any], stream: bool, status: int = 200,
               authorization: str | None = None, api: str = "openai", headers: dict[str, str] | None = None) -> Seen:
        self.counts[call_key(model, stream, body.get("logprobs") is True)] += 1
        return Seen(model=model, body=body, stream=stream, started=time.monotonic(), status=status)


def counting_state(tokens: int) -> Counting:
    words = answer_words(tokens)
    return Counting(Script(tokens=words, entropies=[SURE_BITS] * len(words)))


async def serve(state: Counting, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; the first stdout line gives the base URL (bench.harness.fake_upstream)."""
    app = create_app(state)

    async def counts(request: web.Request) -> web.Response:
        return web.json_response(dict(state.counts))

    app.router.add_get("/counts", counts)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"listening http://{host}:{runner.addresses[0][1]}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers_upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=ANSWER_TOKENS)
    args = parser.parse_args(argv)
    tune_gc()  # served like draftgate's own services, so the stand-in API takes little of the CPU
    uvloop.run(serve(counting_state(args.tokens), args.host, args.port))


if __name__ == "__main__":
    main()
