"""`hedge_after: p95` through a real gateway and router against the fake upstream: no hedge until the
primary deployment has enough first-token delays behind it, then a call slower than its p95 is
hedged on the other deployment, the fast one answers and the slow one is cancelled; GET /status shows
the delay the router hedges after."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from services.router.upstreams.hedge import MIN_SAMPLES
from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.stack import ask, running_stack
from tests.integration.test_progressive import metric, wait_for_metric

GOOD = confident(" fine answer here")
SLOW = confident(" slow answer here")


def of(model: str, seen: list[Seen]) -> list[Seen]:
    return [s for s in seen if s.model == model]


def deployments(fake: FakeUpstream, *models: str) -> str:
    return json.dumps([{"name": model, "base_url": fake.url, "model": model} for model in models])


def heavy_status(router: str) -> dict[str, dict[str, object]]:
    tier = httpx.get(f"{router}/status").json()["tiers"]["heavyweight"]
    assert tier["hedge_after"] == "p95"
    return {d["name"]: d for d in tier["deployments"]}


def test_a_call_slower_than_its_deployment_s_p95_is_hedged_once_enough_delays_are_known(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    # least_busy sends every call of one client to heavy-a, the first in config order, while it is free
    fake.script_model("heavy-a", confident(SLOW.text, ttft_s=1.0))
    fake.script_model("heavy-b", GOOD)
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_BALANCING="least_busy",
                       DRAFTGATE_HEAVYWEIGHT_HEDGE_AFTER="p95",
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake, "heavy-a", "heavy-b")) as stack:
        router = stack.routers[0].url
        assert heavy_status(router)["heavy-a"]["hedge_after_ms"] is None
        # 1. No delays known: a slow call is not hedged, heavy-a answers after its second.
        answer = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
        assert answer.choices[0].message.content == SLOW.text
        assert of("heavy-b", fake.seen) == []
        # 2. heavy-a is fast again; once it has MIN_SAMPLES delays, its calls are hedged after their p95.
        fake.script_model("heavy-a", SLOW)
        for _ in range(MIN_SAMPLES - 1):
            answer = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
            assert answer.choices[0].message.content == SLOW.text
        assert of("heavy-b", fake.seen) == []
        status = heavy_status(router)
        assert status["heavy-a"]["ttft_samples"] == MIN_SAMPLES
        delay_ms = status["heavy-a"]["hedge_after_ms"]
        assert isinstance(delay_ms, float) and 0 < delay_ms < 1000  # 19 fast delays and the one of 1 s
        assert status["heavy-b"]["hedge_after_ms"] is None
        # 3. heavy-a stalls: the call is hedged on heavy-b, which answers; heavy-a's call is closed.
        fake.script_model("heavy-a", confident(SLOW.text, ttft_s=20))
        answer = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
        assert answer.choices[0].message.content == GOOD.text
        seen = fake.wait_for(lambda s: len(of("heavy-a", s)) == MIN_SAMPLES + 1
                             and of("heavy-a", s)[-1].ended is not None)
        stalled = of("heavy-a", seen)[-1]
        assert stalled.closed_early and not stalled.completed
        assert len(of("heavy-b", seen)) == 1
        wait_for_metric(router, 'draftgate_upstream_hedges_total{deployment="heavy-b",outcome="won",'
                        'tier="heavyweight"}', 1)
        assert metric(router, 'draftgate_upstream_hedges_total{deployment="heavy-b",outcome="fired",'
                      'tier="heavyweight"}') == 1
        # the cancelled call's time is kept as a lower bound of heavy-a's delay
        assert heavy_status(router)["heavy-a"]["ttft_samples"] == MIN_SAMPLES + 1
