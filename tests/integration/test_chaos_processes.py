"""Chaos through real processes: services killed with SIGKILL while clients keep sending.

Every answer is checked whole: a stream must carry exactly the scripted text under one
completion id, one finish_reason and one [DONE] (no second attempt spliced onto a first, no
chunk lost or repeated); a plain answer must be the whole scripted completion.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakes.scripts import confident, uncertain
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.stack import Stack, ask, start_stack
from tests.integration.test_resilience import FAST_RECLAIM
from tests.support import Service, free_port

CLIENTS = 8
ACCEPTED = "The draft was sure of every single word it said here."
UNSURE = "[unsure]"
STREAM = "[stream]"


ESCALATED = "The heavyweight takes its time and streams this answer to the client token by token."


@dataclass
class Answer:
    """What one client call got, reduced to what the checks need."""

    stream: bool
    decision: str | None
    content: str = ""
    ids: set[str] = field(default_factory=set)
    finish_reasons: list[str] = field(default_factory=list)
    done_markers: int = 0
    after_done: int = 0  # data lines after [DONE]
    errors: list[dict] = field(default_factory=list)  # error events in a stream
    final: str | None = None  # a stream's final decision, from its last chunk's draftgate field


async def ask_plain(client: openai.AsyncOpenAI, prompt: str) -> Answer:
    raw = await client.chat.completions.with_raw_response.create(model="auto", messages=ask(prompt))
    completion = raw.parse()
    choice = completion.choices[0]
    return Answer(stream=False, decision=raw.headers.get("X-Routing-Decision"), content=choice.message.content or "",
                  ids={completion.id}, finish_reasons=[choice.finish_reason], done_markers=1)


async def ask_stream(client: openai.AsyncOpenAI, prompt: str) -> Answer:
    """Read the raw SSE lines, so a second [DONE] or a line after it would be seen."""
    async with client.chat.completions.with_streaming_response.create(model="auto", messages=ask(prompt),
                                                                      stream=True) as response:
        answer = Answer(stream=True, decision=response.headers.get("X-Routing-Decision"))
        async for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if answer.done_markers:
                answer.after_done += 1
            if data == "[DONE]":
                answer.done_markers += 1
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                answer.errors.append(chunk["error"])
                continue
            answer.ids.add(chunk["id"])
            if "draftgate" in chunk:
                answer.final = chunk["draftgate"]["decision"]
            for choice in chunk["choices"]:
                answer.content += choice["delta"].get("content") or ""
                if choice.get("finish_reason"):
                    answer.finish_reasons.append(choice["finish_reason"])
    return answer


def problems(prompt: str, answer: Answer, escalated: tuple[str, ...] = (ESCALATED,)) -> list[str]:
    """Everything wrong with one answer; empty when it is exactly one of the scripted answers."""
    texts, decision = (escalated, "escalate") if UNSURE in prompt else ((ACCEPTED,), "accept")
    found = []
    # A streamed accepted draft is shown as it is drafted: its headers say progressive, its last chunk accept.
    header = "progressive" if answer.stream and decision == "accept" else decision
    if answer.decision != header:
        found.append(f"decision {answer.decision!r}, expected {header!r}")
    if answer.stream and answer.final != decision:
        found.append(f"final decision {answer.final!r}, expected {decision!r}")
    if answer.content not in texts:
        found.append(f"content {answer.content!r}")
    if len(answer.ids) != 1:  # the upstream gives every attempt its own id: two ids, two attempts spliced
        found.append(f"{len(answer.ids)} completion ids: {sorted(answer.ids)}")
    if answer.finish_reasons != ["stop"]:
        found.append(f"finish reasons {answer.finish_reasons}")
    if answer.done_markers != 1 or answer.after_done or answer.errors:
        found.append(f"{answer.done_markers} [DONE] markers, {answer.after_done} lines after, errors {answer.errors}")
    return found


def refused_splice(answer: Answer, first_text: str) -> bool:
    """A stream cut short whose retry said something else: what the client got is a beginning of
    the first attempt's answer, ended by one error event instead of a [DONE]."""
    return (answer.stream and [e.get("code") for e in answer.errors] == ["retry_diverged"]
            and first_text.startswith(answer.content) and len(answer.ids) == 1 and not answer.finish_reasons
            and answer.done_markers == 0)


def counter(url: str, name: str, label: str = "") -> float:
    """A counter's total from a /metrics page, over the samples whose labels contain `label`."""
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(value) for labels, value in re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", metrics, re.MULTILINE)
               if label in labels)


async def steady_load(client: openai.AsyncOpenAI, prompts: list[str],
                      deadline_s: float) -> list[tuple[str, Answer | BaseException]]:
    """CLIENTS concurrent clients, each asking the next prompt until none is left."""
    results: list[tuple[str, Answer | BaseException]] = []
    pending = iter(prompts)

    async def one_client() -> None:
        for prompt in pending:
            call = ask_stream if STREAM in prompt else ask_plain
            try:
                results.append((prompt, await call(client, prompt)))
            except (openai.OpenAIError, AssertionError, ValueError) as exc:
                results.append((prompt, exc))

    async with asyncio.timeout(deadline_s):
        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
    return results


def streaming_heavyweight(seen: list[Seen]) -> bool:
    """An escalated answer is part-way through streaming to a streaming client."""
    return any(s.model == "fake-heavy" and STREAM in s.body["messages"][-1]["content"] and s.ended is None
               and s.tokens_sent >= 3 for s in seen)


PROMPTS = [f"{UNSURE if i % 2 else ''}{STREAM if i % 4 < 2 else ''} q{i}" for i in range(64)]


def script(fake: FakeUpstream, escalated: str) -> None:
    # Drafts take ~0.4 s and escalated streams ~2 s, so the kill finds both under way.
    fake.script_model("fake-drafter", confident(ACCEPTED, tokens_per_s=30))
    fake.script(UNSURE, uncertain(escalated, bits=3.0, tokens_per_s=8))


async def kill_a_router_mid_stream(stack: Stack, victim_fake: FakeUpstream,
                                   **survivor_env: str) -> tuple[list[tuple[str, Answer | BaseException]], float]:
    """Two routers, 8 clients; the victim is SIGKILLed while it streams an escalated answer.

    The survivor is frozen until then, so the kill is sure to cut a stream short; then it wakes
    up to take that over and share the rest. Returns every answer and how many requests the
    survivor reclaimed."""
    victim, survivor = stack.add_router(), stack.add_router(**survivor_env)
    assert survivor.proc is not None
    survivor.proc.send_signal(signal.SIGSTOP)
    load = asyncio.ensure_future(steady_load(stack.async_client(timeout=60), PROMPTS, deadline_s=120))
    try:
        await asyncio.to_thread(victim_fake.wait_for, streaming_heavyweight, 60)
    finally:
        survivor.proc.send_signal(signal.SIGCONT)
    victim.kill()
    results = await load
    assert victim.proc is not None and victim.proc.returncode == -signal.SIGKILL
    assert any(s.model == "fake-heavy" and s.closed_early for s in victim_fake.seen)  # a stream was cut short
    assert len(results) == len(PROMPTS)
    return results, counter(survivor.url, "draftgate_router_reclaimed_total")


async def test_a_router_killed_under_load_answers_every_request_exactly_once(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    """Both routers call the same (deterministic) upstream: the retry of a cut stream says what
    the first attempt said, and the client gets one whole answer under one id."""
    script(fake, ESCALATED)
    stack = start_stack(redis_server, tmp_path, fake, routers=0, **FAST_RECLAIM)
    try:
        results, reclaimed = await kill_a_router_mid_stream(stack, fake)
    finally:
        stack.stop()
    failures = {prompt: result if isinstance(result, BaseException) else problems(prompt, result)
                for prompt, result in results}
    assert {prompt: found for prompt, found in failures.items() if found} == {}
    assert reclaimed >= 1


async def test_a_retry_that_differs_from_the_streamed_start_ends_in_an_error_never_a_splice(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    """Each router has its own upstream answering differently (as sampling would): a cut stream's
    retry cannot continue it, so the client gets the first attempt's start and an error event."""
    victim_says, survivor_says = (f"{who} says: {ESCALATED}" for who in ("Victim", "Survivor"))
    with FakeUpstream() as survivor_fake:
        script(fake, victim_says)
        script(survivor_fake, survivor_says)
        stack = start_stack(redis_server, tmp_path, fake, routers=0, **FAST_RECLAIM)
        try:
            results, _ = await kill_a_router_mid_stream(stack, fake, DRAFTGATE_DRAFTER_BASE_URL=survivor_fake.url,
                                                        DRAFTGATE_HEAVYWEIGHT_BASE_URL=survivor_fake.url)
        finally:
            stack.stop()
    answers = {prompt: result for prompt, result in results if isinstance(result, Answer)}
    assert len(answers) == len(results), results
    refused = {prompt for prompt, answer in answers.items() if refused_splice(answer, victim_says)}
    assert refused  # the stream the kill cut short
    failures = {prompt: problems(prompt, answer, (victim_says, survivor_says)) for prompt, answer in answers.items()
                if prompt not in refused}
    assert {prompt: found for prompt, found in failures.items() if found} == {}


# The cache and embedder as processes that can be killed and started again on the same ports.


@pytest.fixture
def cached_stack(redis_server: str, fake: FakeUpstream, tmp_path: Path) -> Iterator[tuple[Stack, Service, Service]]:
    cache_port, embedder_port = free_port(), free_port()
    stack = start_stack(redis_server, tmp_path, fake, routers=2,
                        DRAFTGATE_GATEWAY_CACHE_URL=f"http://127.0.0.1:{cache_port}",
                        DRAFTGATE_GATEWAY_CACHE_TIMEOUT_S="10")
    env = {**stack.env, "DRAFTGATE_CACHE_PORT": str(cache_port), "DRAFTGATE_EMBEDDER_PORT": str(embedder_port),
           "DRAFTGATE_CACHE_EMBEDDER_URL": f"http://127.0.0.1:{embedder_port}",
           "DRAFTGATE_CACHE_QDRANT_PATH": str(tmp_path / "qdrant"), "DRAFTGATE_CACHE_EMBEDDER_TIMEOUT_S": "10"}
    embedder = Service("services.embedder", env, embedder_port, tmp_path / "embedder.log")
    cache = Service("services.cache", env, cache_port, tmp_path / "cache.log")
    try:
        embedder.start(timeout_s=180)
        cache.start(timeout_s=60)
        yield stack, cache, embedder
    finally:
        for service in (cache, embedder):
            service.stop()
        stack.stop()


async def decisions(client: openai.AsyncOpenAI, prompts: list[str],
                    on_progress: asyncio.Event | None = None) -> list[str | BaseException]:
    """Ask every prompt (CLIENTS at a time); each result is the routing decision or the failure.
    `on_progress` is set once a quarter of the answers are in."""
    pending = iter(prompts)
    results: list[str | BaseException] = []

    async def one_client() -> None:
        for prompt in pending:
            try:
                raw = await client.chat.completions.with_raw_response.create(model="auto", messages=ask(prompt))
                assert raw.parse().choices[0].message.content == ACCEPTED
                results.append(raw.headers["X-Routing-Decision"])
            except (openai.OpenAIError, AssertionError, KeyError) as exc:
                results.append(exc)
            if on_progress is not None and len(results) >= len(prompts) // 4:
                on_progress.set()

    await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
    return results


async def until_hit(client: openai.AsyncOpenAI, prompt: str, cache_header: str, timeout_s: float = 60) -> None:
    """Ask `prompt` until the cache answers it with `cache_header` (the cache writer is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while True:
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=ask(prompt))
        if raw.headers.get("X-Cache") == cache_header:
            assert raw.parse().choices[0].message.content == ACCEPTED
            return
        assert time.monotonic() < deadline, f"no {cache_header} hit for {prompt!r} within {timeout_s} s"
        await asyncio.sleep(0.2)


async def test_cache_and_embedder_killed_under_load_requests_go_on_as_misses(
        cached_stack: tuple[Stack, Service, Service], fake: FakeUpstream) -> None:
    stack, cache, embedder = cached_stack
    fake.script_model("fake-drafter", confident(ACCEPTED, tokens_per_s=200))
    client = stack.async_client(timeout=60)
    before = "what's the capital city of France"
    await client.chat.completions.create(model="auto", messages=ask(before))
    await until_hit(client, before, "exact")

    under_way = asyncio.Event()

    async def kill_both() -> None:
        await under_way.wait()  # the kills land among requests in flight
        cache.kill()
        embedder.kill()

    during, _ = await asyncio.gather(decisions(client, [f"question {i}" for i in range(120)], under_way),
                                     kill_both())
    during += await decisions(client, [before, "asked during the outage"] * 4)

    assert [r for r in during if not isinstance(r, str)] == []  # every request answered, no 5xx
    assert during[-8:] == ["accept"] * 8  # with the cache gone every request is a miss, even repeats
    assert counter(stack.url, "draftgate_gateway_cache_lookups_total", 'result="error"') > 0

    embedder.start(timeout_s=180)
    cache.start(timeout_s=60)
    await until_hit(client, before, "exact")  # stored before the outage
    await until_hit(client, "asked during the outage", "exact")  # its write waited on the stream
    await until_hit(client, "What is the capital of France?", "semantic")  # the embedder is back too
    assert cache.proc is not None and embedder.proc is not None
