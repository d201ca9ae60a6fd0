"""Operating a tier's pool of deployments, through a real gateway and router against the fake
upstream: its metrics on the router's /metrics."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fakes.scripts import Script, confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import ask, running_stack
from tests.integration.test_progressive import metric, wait_for_metric

GOOD = confident(" fine answer here")


def deployments(fake: FakeUpstream, *models: str) -> str:
    """The DRAFTGATE_<TIER>_DEPLOYMENTS value: one deployment per model on the fake, named after it."""
    return json.dumps([{"name": model, "base_url": fake.url, "model": model} for model in models])


def test_calls_retries_and_breakers_are_counted_per_deployment(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.script_model("heavy-a", Script(tokens=["x"], status=502))
    fake.script_model("heavy-b", GOOD)
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_BALANCING="least_busy",
                       DRAFTGATE_HEAVYWEIGHT_BREAKER_FAILURES="2", DRAFTGATE_HEAVYWEIGHT_BREAKER_COOLDOWN_S="600",
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake, "heavy-a", "heavy-b")) as stack:
        router = stack.routers[0].url
        assert metric(router, 'draftgate_upstream_breaker_state{deployment="heavy-a",tier="heavyweight"}') == 0
        for _ in range(3):
            answer = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
            assert answer.choices[0].message.content == GOOD.text
        wait_for_metric(router, 'draftgate_upstream_calls_total{deployment="heavy-b",outcome="succeeded",'
                        'tier="heavyweight"}', 3)
        assert metric(router, 'draftgate_upstream_calls_total{deployment="heavy-a",outcome="failed",'
                      'tier="heavyweight"}') == 2
        assert metric(router, 'draftgate_upstream_retries_total{deployment="heavy-b",tier="heavyweight"}') == 2
        assert metric(router, 'draftgate_upstream_breaker_state{deployment="heavy-a",tier="heavyweight"}') == 2
        assert metric(router, 'draftgate_upstream_breaker_state{deployment="heavy-b",tier="heavyweight"}') == 0
        assert metric(router, 'draftgate_upstream_breaker_state{deployment="drafter",tier="drafter"}') == 0


def test_fallbacks_and_hedges_are_counted(redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.script_model("heavy-down", Script(tokens=["x"], status=500))
    fake.script_model("heavy-slow", Script(tokens=[" slow"], ttft_s=20))
    fake.script_model("heavy-fast", GOOD)
    fake.script_model("fake-drafter", GOOD)
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_BALANCING="least_busy",
                       DRAFTGATE_HEAVYWEIGHT_HEDGE_AFTER_MS="200", DRAFTGATE_HEAVYWEIGHT_RETRIES="0",
                       DRAFTGATE_HEAVYWEIGHT_FALLBACKS="drafter",
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake, "heavy-slow", "heavy-fast")) as stack:
        answer = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
        assert answer.choices[0].message.content == GOOD.text
        router = stack.routers[0].url
        wait_for_metric(router, 'draftgate_upstream_hedges_total{deployment="heavy-fast",outcome="fired",'
                        'tier="heavyweight"}', 1)
        assert metric(router, 'draftgate_upstream_hedges_total{deployment="heavy-fast",outcome="won",'
                      'tier="heavyweight"}') == 1
        assert metric(router, 'draftgate_upstream_calls_total{deployment="heavy-slow",outcome="abandoned",'
                      'tier="heavyweight"}') == 1
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_RETRIES="0",
                       DRAFTGATE_HEAVYWEIGHT_FALLBACKS="drafter",
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake, "heavy-down")) as stack:
        answer = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
        assert answer.choices[0].message.content == GOOD.text
        router = stack.routers[0].url
        wait_for_metric(router, 'draftgate_upstream_fallbacks_total{fallback="drafter",tier="heavyweight"}', 1)
        assert metric(router, 'draftgate_upstream_calls_total{deployment="drafter",outcome="succeeded",'
                      'tier="drafter"}') == 1


def test_tpm_reservations_are_settled_to_the_usage_so_the_next_call_fits(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    """Each call reserves its max_tokens against a 1000-token-per-minute deployment; unsettled, the
    second reservation would not fit for 12 s, past the 8 s request timeout, and would be refused
    (429). Settled to the usage the fake reports (a few tokens), five calls in a row fit."""
    fake.script_model("heavy-t", GOOD)
    limited = json.dumps([{"name": "heavy-t", "base_url": fake.url, "model": "heavy-t", "tpm": 1000}])
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=limited,
                       DRAFTGATE_GATEWAY_REQUEST_TIMEOUT_S="8") as stack:
        for _ in range(5):
            answer = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"), max_tokens=600)
            assert answer.choices[0].message.content == GOOD.text
    assert len([s for s in fake.seen if s.model == "heavy-t"]) == 5
