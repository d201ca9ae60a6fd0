"""A tier as a pool of deployments, through a real gateway and router against the fake upstream:
retries on the next deployment before the first chunk (never after), fallbacks to another tier,
breakers that stop calling a failing deployment."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from tests.fakes.scripts import Script, confident
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.stack import ask, running_stack

GOOD = confident(" fine answer here")


def of(model: str, seen: list[Seen]) -> list[Seen]:
    return [s for s in seen if s.model == model]


def deployments(fake: FakeUpstream, *models: str) -> str:
    """The DRAFTGATE_<TIER>_DEPLOYMENTS value: one deployment per model on the fake, named after it."""
    return json.dumps([{"name": model, "base_url": fake.url, "model": model} for model in models])


def test_a_failing_deployment_is_retried_on_the_next_and_the_client_never_sees_it(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.script_model("heavy-a", Script(tokens=["x"], status=503))
    fake.script_model("heavy-b", GOOD)
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_BALANCING="least_busy",
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake, "heavy-a", "heavy-b")) as stack:
        for stream in (False, True):
            if stream:
                parts = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"), stream=True)
                text = "".join(part.choices[0].delta.content or "" for part in parts if part.choices)
            else:
                answer = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
                text = answer.choices[0].message.content or ""
            assert text == GOOD.text
    seen = fake.seen
    assert len(of("heavy-a", seen)) == 2 and len(of("heavy-b", seen)) == 2


def test_a_stream_that_fails_after_its_first_chunk_is_not_retried(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.script_model("heavy-a", Script(tokens=[" one", " two", " three"], stream_error=500, garbage_after=2))
    fake.script_model("heavy-b", GOOD)
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_BALANCING="least_busy",
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake, "heavy-a", "heavy-b")) as stack:
        parts = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"),
                                                                    stream=True)
        with pytest.raises(openai.APIError):
            for _ in parts:
                pass
    assert len(of("heavy-a", fake.seen)) == 1
    assert of("heavy-b", fake.seen) == []


def test_a_tier_whose_deployments_all_fail_falls_back_to_its_fallback(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.script_model("heavy-a", Script(tokens=["x"], status=500))
    fake.script_model("fake-drafter", GOOD)
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_FALLBACKS="drafter",
                       DRAFTGATE_HEAVYWEIGHT_RETRIES="1", DRAFTGATE_HEAVYWEIGHT_RETRY_BACKOFF_MS="1",
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake, "heavy-a")) as stack:
        answer = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
    assert answer.choices[0].message.content == GOOD.text
    assert len(of("heavy-a", fake.seen)) == 2  # the first attempt and its one retry
    assert len(of("fake-drafter", fake.seen)) == 1


def test_a_client_error_is_not_retried_anywhere(redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.script_model("heavy-a", Script(tokens=["x"], status=400))
    fake.script_model("heavy-b", GOOD)
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_BALANCING="least_busy",
                       DRAFTGATE_HEAVYWEIGHT_FALLBACKS="drafter",
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake, "heavy-a", "heavy-b")) as stack, \
            pytest.raises(openai.BadRequestError):
        stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
    assert len(fake.seen) == 1


def test_the_breaker_stops_calls_to_a_deployment_that_keeps_failing(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.script_model("heavy-a", Script(tokens=["x"], status=502))
    fake.script_model("heavy-b", GOOD)
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_BALANCING="least_busy",
                       DRAFTGATE_HEAVYWEIGHT_BREAKER_FAILURES="2", DRAFTGATE_HEAVYWEIGHT_BREAKER_COOLDOWN_S="600",
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake, "heavy-a", "heavy-b")) as stack:
        for _ in range(4):
            answer = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
            assert answer.choices[0].message.content == GOOD.text
    # least_busy prefers heavy-a (config order) until its breaker opens after its second failure
    assert len(of("heavy-a", fake.seen)) == 2
    assert len(of("heavy-b", fake.seen)) == 4


def test_a_slow_deployment_is_hedged_and_the_loser_cancelled(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.script_model("heavy-slow", Script(tokens=[" slow"], ttft_s=20))
    fake.script_model("heavy-fast", GOOD)
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_BALANCING="least_busy",
                       DRAFTGATE_HEAVYWEIGHT_HEDGE_AFTER_MS="200",
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake, "heavy-slow", "heavy-fast")) as stack:
        answer = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
        assert answer.choices[0].message.content == GOOD.text
        seen = fake.wait_for(lambda s: any(x.model == "heavy-slow" and x.ended is not None for x in s))
    (slow,) = of("heavy-slow", seen)
    assert slow.closed_early and not slow.completed
