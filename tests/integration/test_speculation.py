"""Speculative execution: the heavyweight starts early on elevated entropy, and is either
cancelled (draft accepted) or serves the escalation it anticipated."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.scripts import Script, confident
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.stack import Stack, ask, running_stack

HEAVY_TOKENS = [f" h{i}" for i in range(20)]
HEAVY_TEXT = "".join(HEAVY_TOKENS)


def of(model: str, seen: list[Seen]) -> list[Seen]:
    return [s for s in seen if s.model == model]


def drifting_draft(tokens_per_s: float = 100) -> Script:
    """Elevated from the first token (1.5 bits > 1.4 soft threshold), critical from token 13:
    the window mean crosses 2.0 bits at token 19."""
    return Script(tokens=[f" d{i}" for i in range(30)], entropies=[1.5] * 12 + [2.3] * 18,
                  tokens_per_s=tokens_per_s)


def router_metric(stack: Stack, name: str) -> float:
    text = httpx.get(f"{stack.routers[0].url}/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_speculation_fires_at_the_soft_threshold_and_is_cancelled_on_accept(stack: Stack,
                                                                           fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=[f" a{i}" for i in range(15)], entropies=[1.5] * 15,
                                             tokens_per_s=50))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=20))
    raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("elevated"))
    assert raw.headers["X-Routing-Decision"] == "accept"
    assert raw.headers["X-Speculation"] == "cancelled"
    assert raw.parse().choices[0].message.content == "".join(f" a{i}" for i in range(15))
    seen = fake.wait_for(lambda s: len(of("fake-heavy", s)) == 1 and of("fake-heavy", s)[0].ended is not None)
    (heavy,) = of("fake-heavy", seen)
    assert heavy.closed_early and heavy.tokens_sent < len(HEAVY_TOKENS)
    assert router_metric(stack, "draftgate_speculations_cancelled_total") >= 1
    assert router_metric(stack, "draftgate_speculation_wasted_tokens_total") >= heavy.tokens_sent


def test_no_speculation_below_the_soft_threshold(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=[f" b{i}" for i in range(15)], entropies=[1.3] * 15))
    raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("calm"))
    assert raw.headers["X-Speculation"] == "none"
    assert of("fake-heavy", fake.seen) == []


@pytest.mark.parametrize("stream", [False, True])
def test_escalation_is_served_from_the_running_speculation(stack: Stack, fake: FakeUpstream, stream: bool) -> None:
    fake.script_model("fake-drafter", drifting_draft())
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    client = stack.client()
    if stream:
        response = client.chat.completions.with_raw_response.create(model="auto", messages=ask("drift"), stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    else:
        response = client.chat.completions.with_raw_response.create(model="auto", messages=ask("drift"))
        text = response.parse().choices[0].message.content
    assert response.headers["X-Routing-Decision"] == "escalate"
    assert response.headers["X-Speculation"] == "used"
    assert text == HEAVY_TEXT
    seen = fake.wait_for(lambda s: all(x.ended is not None for x in s) and len(s) == 2)
    (draft,), (heavy,) = of("fake-drafter", seen), of("fake-heavy", seen)
    assert heavy.started < draft.ended  # started while the drafter was still running
    assert draft.closed_early and heavy.completed


@pytest.fixture(scope="module")
def bounded_stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("bounded")
    with running_stack(redis_server, logs, fake, DRAFTGATE_ROUTING_MAX_CONCURRENT_SPECULATIONS="2") as running:
        yield running


def max_overlap(calls: list[Seen]) -> int:
    events = sorted([(c.started, 1) for c in calls] + [(c.ended or float("inf"), -1) for c in calls])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


async def test_concurrency_bound_holds_under_a_burst(bounded_stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", drifting_draft(tokens_per_s=40))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, ttft_s=0.2, tokens_per_s=100))
    client = bounded_stack.async_client()
    answers = await asyncio.gather(*(client.chat.completions.with_raw_response.create(
        model="auto", messages=ask(f"burst {i}")) for i in range(8)))
    assert all(a.parse().choices[0].message.content == HEAVY_TEXT for a in answers)
    used = [a.headers["X-Speculation"] for a in answers].count("used")
    assert used >= 1
    seen = fake.wait_for(lambda s: len(of("fake-heavy", s)) == 8 and all(x.ended for x in s))
    # Speculative calls (started before their draft escalated) never exceed the bound.
    speculative = [h for h in of("fake-heavy", seen) if h.started < min(d.ended for d in of("fake-drafter", seen))]
    assert max_overlap(speculative) <= 2
    assert router_metric(bounded_stack, "draftgate_speculations_skipped_total") >= 1


@pytest.fixture(scope="module")
def serial_stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("serial")
    with running_stack(redis_server, logs, fake, DRAFTGATE_ROUTING_SPECULATION_THRESHOLD="null") as running:
        yield running


def test_speculation_off_escalates_serially(serial_stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", drifting_draft())
    fake.script_model("fake-heavy", confident(HEAVY_TEXT))
    raw = serial_stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("drift"))
    assert raw.headers["X-Routing-Decision"] == "escalate"
    assert raw.headers["X-Speculation"] == "none"
    assert raw.parse().choices[0].message.content == HEAVY_TEXT
    seen = fake.wait_for(lambda s: len(s) == 2 and all(x.ended for x in s))
    (draft,), (heavy,) = of("fake-drafter", seen), of("fake-heavy", seen)
    assert heavy.started >= draft.ended - 0.05  # only after the drafter was aborted


def test_accepted_answer_with_speculation_off_matches_serial(serial_stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=[f" a{i}" for i in range(15)], entropies=[1.5] * 15))
    raw = serial_stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("elevated"))
    assert (raw.headers["X-Routing-Decision"], raw.headers["X-Speculation"]) == ("accept", "none")
    assert of("fake-heavy", fake.seen) == []


def test_client_disconnect_cancels_drafter_and_speculation(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=[f" s{i}" for i in range(60)], entropies=[1.5] * 60,
                                             tokens_per_s=20))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=5))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{stack.url}/v1/chat/completions", json={"messages": ask("leaving")}, timeout=0.8)
    seen = fake.wait_for(lambda s: len(s) == 2 and all(x.ended for x in s), timeout_s=5)
    assert all(x.closed_early for x in seen)


def test_speculation_budget_survives_a_burst_of_quick_accepts(bounded_stack: Stack, fake: FakeUpstream) -> None:
    """A draft that arrives in one network read is judged and accepted before its speculation's
    task ever runs; the budget (2 here) must still come back, so speculation goes on afterwards."""
    fake.script_model("fake-drafter", Script(tokens=[f" q{i}" for i in range(12)], entropies=[1.5] * 12))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, ttft_s=5))
    client = bounded_stack.client()
    started = router_metric(bounded_stack, "draftgate_speculations_started_total")
    for i in range(6):
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask(f"quick {i}"))
        assert (raw.headers["X-Routing-Decision"], raw.headers["X-Speculation"]) == ("accept", "cancelled"), i
    assert router_metric(bounded_stack, "draftgate_speculations_started_total") == started + 6
    assert router_metric(bounded_stack, "draftgate_speculations_active") == 0


async def test_speculation_budget_comes_back_after_a_concurrent_burst(bounded_stack: Stack, fake: FakeUpstream) -> None:
    """Eight quick accepts at once against a budget of two: some speculate, the rest are skipped;
    afterwards the whole budget is free again and the next uncertain draft speculates."""
    fake.script_model("fake-drafter", Script(tokens=[f" q{i}" for i in range(12)], entropies=[1.5] * 12))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, ttft_s=5))
    client = bounded_stack.async_client()
    answers = await asyncio.gather(*(client.chat.completions.with_raw_response.create(
        model="auto", messages=ask(f"burst of quick accepts {i}")) for i in range(8)))
    assert {a.headers["X-Routing-Decision"] for a in answers} == {"accept"}
    assert "cancelled" in {a.headers["X-Speculation"] for a in answers}
    assert router_metric(bounded_stack, "draftgate_speculations_active") == 0  # released before each answer
    raw = await client.chat.completions.with_raw_response.create(model="auto", messages=ask("after the burst"))
    assert raw.headers["X-Speculation"] == "cancelled"
