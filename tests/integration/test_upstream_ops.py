"""Operating a tier's pool of deployments, through a real gateway and router against the fake
upstream: its metrics on the router's /metrics, tpm settled after each call, GET /status on a router
and, gathered from every live router, on the gateway (admins only); an rpm limit shared by two
router processes; a pool mixing an OpenAI-wire and a Gemini-wire drafter, judged by log-probs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.scripts import Script, confident, uncertain
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import ask, running_stack, start_stack
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
        # the loser's prompt ("q": one token at 4 characters a token) may be billed though unused
        assert metric(router, 'draftgate_upstream_hedge_wasted_tokens_total{deployment="heavy-slow",'
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


ADMIN, CLIENT = "admin-ops-key-0003", "client-alice-key-0001"


def poll(read: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float = 10) -> Any:
    """Read until `done` holds: routers publish their status on their heartbeat."""
    deadline = time.monotonic() + timeout_s
    while not done(value := read()):
        assert time.monotonic() < deadline, f"still {value!r} after {timeout_s} s"
        time.sleep(0.05)
    return value


def test_status_shows_each_routers_deployments_and_the_gateway_gathers_them_for_admins(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.script_model("heavy-a", Script(tokens=["x"], status=502))
    fake.script_model("heavy-b", GOOD)
    stack = start_stack(redis_server, tmp_path, fake, routers=2, DRAFTGATE_HEAVYWEIGHT_BALANCING="least_busy",
                        DRAFTGATE_HEAVYWEIGHT_BREAKER_FAILURES="1", DRAFTGATE_HEAVYWEIGHT_BREAKER_COOLDOWN_S="600",
                        DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake, "heavy-a", "heavy-b"),
                        DRAFTGATE_BUS_ROUTER_HEARTBEAT_S="0.2", DRAFTGATE_GATEWAY_API_KEYS_ENV="DG_CLIENT_KEYS",
                        DG_CLIENT_KEYS=CLIENT, DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV="DG_ADMIN_KEYS", DG_ADMIN_KEYS=ADMIN)
    try:
        client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=CLIENT, max_retries=0)
        answer = client.chat.completions.create(model="heavyweight", messages=ask("q"))
        assert answer.choices[0].message.content == GOOD.text
        consumers = {httpx.get(f"{router.url}/health").json()["consumer"] for router in stack.routers}
        views = [httpx.get(f"{router.url}/status").json() for router in stack.routers]
        assert {view["router"] for view in views} == consumers
        breakers = [{d["name"]: d["breaker"] for d in view["tiers"]["heavyweight"]["deployments"]} for view in views]
        assert {"heavy-a": "open", "heavy-b": "closed"} in breakers  # the router that served the request
        assert all(view["tiers"]["drafter"]["deployments"][0]["in_flight"] == 0 for view in views)

        def gathered() -> httpx.Response:
            return httpx.get(f"{stack.url}/status", headers={"Authorization": f"Bearer {ADMIN}"})

        def reports_the_open_breaker(response: httpx.Response) -> bool:
            routers = response.json()["routers"]
            return {r["router"] for r in routers} == consumers and any(
                d["breaker"] == "open" for r in routers for d in r["tiers"]["heavyweight"]["deployments"])

        response = poll(gathered, reports_the_open_breaker)
        assert response.status_code == 200 and response.json()["unreported"] == []
        assert httpx.get(f"{stack.url}/status").status_code == 401
        assert httpx.get(f"{stack.url}/status", headers={"Authorization": f"Bearer {CLIENT}"}).status_code == 403
        stack.routers[1].stop()  # a router that left is gone from the gathered status at once
        poll(lambda: {r["router"] for r in gathered().json()["routers"]}, lambda names: len(names) == 1)
    finally:
        stack.stop()


def test_an_rpm_limit_holds_across_router_processes_and_the_client_gets_429_with_retry_after(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    """rpm 1: the first router spends the minute's one call; a second router process, alone after the
    first has left, refuses the next call from the same Redis bucket: 429, Retry-After, nothing sent."""
    fake.script_model("heavy-r", GOOD)
    limited = json.dumps([{"name": "heavy-r", "base_url": fake.url, "model": "heavy-r", "rpm": 1}])
    stack = start_stack(redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=limited,
                        DRAFTGATE_GATEWAY_REQUEST_TIMEOUT_S="5")
    try:
        answer = stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
        assert answer.choices[0].message.content == GOOD.text
        stack.add_router()
        stack.routers[0].stop()
        with pytest.raises(openai.RateLimitError) as caught:
            stack.client().chat.completions.create(model="heavyweight", messages=ask("q"))
        assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 60
        assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "rate_limit_exceeded"
        second = httpx.get(f"{stack.routers[1].url}/status").json()["tiers"]["heavyweight"]["deployments"][0]
        assert second["rate_limited_for_s"] > 0  # the refusal came from the second router
    finally:
        stack.stop()
    assert [s.model for s in fake.seen] == ["heavy-r"]


def test_a_pool_with_a_gemini_drafter_routes_by_its_log_probs(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    """The drafter tier: an OpenAI-wire deployment that is down, then a Gemini-wire one. The retry
    lands on Gemini, whose log-probs decide: a confident draft is accepted, an uncertain one escalates."""
    fake.script_model("draft-down", Script(tokens=["x"], status=503))
    drafters = json.dumps([{"name": "draft-down", "base_url": fake.url, "model": "draft-down"},
                           {"name": "draft-gemini", "provider": "gemini", "base_url": fake.origin,
                            "model": "gemini-draft", "api_key_env": "TEST_GEMINI_KEY"}])
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_DRAFTER_DEPLOYMENTS=drafters,
                       DRAFTGATE_DRAFTER_BALANCING="least_busy", DRAFTGATE_DRAFTER_RETRY_BACKOFF_MS="1",
                       TEST_GEMINI_KEY="AIza-test") as stack:
        fake.script_model("gemini-draft", confident("Paris is the capital of France."))
        raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("capital?"))
        assert raw.parse().choices[0].message.content == "Paris is the capital of France."
        assert (raw.headers["X-Routing-Decision"], raw.headers["X-Routing-Tier"]) == ("accept", "drafter")
        assert [(s.api, s.model) for s in fake.seen] == [("openai", "draft-down"), ("gemini", "gemini-draft")]
        assert fake.seen[1].body["generationConfig"]["responseLogprobs"] is True

        fake.reset()
        fake.script_model("draft-down", Script(tokens=["x"], status=503))
        fake.script_model("gemini-draft", uncertain("Maybe Lyon, or not.", bits=3.0))
        fake.script_model("fake-heavy", confident("The capital of France is Paris."))
        raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("capital?"))
        assert raw.parse().choices[0].message.content == "The capital of France is Paris."
        assert (raw.headers["X-Routing-Decision"], raw.headers["X-Routing-Tier"]) == ("escalate", "heavyweight")
        assert ("gemini", "gemini-draft") in [(s.api, s.model) for s in fake.seen]
