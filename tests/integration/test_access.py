"""Keys through the real processes: client keys for the API, admin keys for the operator endpoints, a
client key flushing only its own tenant's cache entries, and `models.retrieve` with the official client.

The cache runs without an embedder (its URL answers nothing), so entries land in the exact tier only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from services.gateway.app import create_app
from services.gateway.operator import is_operator_path
from shared.config import load_config
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, ask, start_stack
from tests.support import Service, free_port

ALICE, BOB, ADMIN = "client-alice-key-0001", "client-bob-key-0002", "admin-ops-key-0003"
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def keyed(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("keyed")
    cache_port = free_port()
    stack = start_stack(redis_server, logs, fake, DRAFTGATE_GATEWAY_API_KEYS_ENV="DG_CLIENT_KEYS",
                        DG_CLIENT_KEYS=f"{ALICE},{BOB}", DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV="DG_ADMIN_KEYS",
                        DG_ADMIN_KEYS=ADMIN, DRAFTGATE_GATEWAY_CACHE_URL=f"http://127.0.0.1:{cache_port}",
                        DRAFTGATE_GATEWAY_CACHE_TIMEOUT_S="10")
    env = {**stack.env, "DRAFTGATE_CACHE_PORT": str(cache_port),
           "DRAFTGATE_CACHE_EMBEDDER_URL": f"http://127.0.0.1:{free_port()}",
           "DRAFTGATE_CACHE_QDRANT_PATH": str(logs / "qdrant")}
    cache = Service("services.cache", env, cache_port, logs / "cache.log").start(timeout_s=60)
    yield stack
    cache.stop()
    stack.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def stats(stack: Stack) -> dict:
    response = httpx.get(f"{stack.url}/cache/stats", headers=auth(ADMIN), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def flush(stack: Stack, key: str, **target: str) -> httpx.Response:
    return httpx.post(f"{stack.url}/cache/flush", headers=auth(key), json=target or None, timeout=10)


def decision(stack: Stack, key: str) -> str:
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask(QUESTION), temperature=0)
    return raw.headers["X-Routing-Decision"]


def wait_for_entries(stack: Stack, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while stats(stack)["exact"]["entries"] != count:
        assert time.monotonic() < deadline, stats(stack)
        time.sleep(0.05)


def test_operator_endpoints_need_an_admin_key(keyed: Stack) -> None:
    url = keyed.url
    for method, path in (("GET", "/cache/stats"), ("POST", "/cache/flush")):
        for headers in ({}, auth("not-a-key"), auth(f"{ADMIN}x")):
            response = httpx.request(method, f"{url}{path}", headers=headers, timeout=10)
            assert response.status_code == 401, (path, headers)
            assert response.json()["error"]["type"] == "authentication_error"
    forbidden = httpx.get(f"{url}/cache/stats", headers=auth(ALICE), timeout=10)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == {
        "message": forbidden.json()["error"]["message"], "type": "permission_error", "param": None,
        "code": "admin_key_required"}
    assert "admin key" in forbidden.json()["error"]["message"]
    assert "exact" in stats(keyed)  # the admin key passes
    # An unknown path stays a 404 whoever asks; the probes and metrics stay open.
    assert httpx.get(f"{url}/admin/nothing-here", timeout=10).status_code == 404
    assert all(httpx.get(f"{url}{path}", timeout=10).status_code == 200 for path in ("/health", "/metrics"))


def test_the_sdk_sees_a_client_key_on_an_admin_endpoint_as_permission_denied(keyed: Stack) -> None:
    client = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=ALICE, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.get(f"{keyed.url}/cache/stats", cast_to=object)
    assert denied.value.status_code == 403 and denied.value.code == "admin_key_required"


def test_a_client_key_flushes_only_its_own_tenant(keyed: Stack) -> None:
    assert flush(keyed, ADMIN).status_code == 200
    assert decision(keyed, ALICE) == "accept" and decision(keyed, BOB) == "accept"
    wait_for_entries(keyed, 2)
    assert decision(keyed, ALICE) == "cache_hit" and decision(keyed, BOB) == "cache_hit"

    naming = flush(keyed, ALICE, tenant="anyone")
    assert naming.status_code == 403 and naming.json()["error"]["param"] == "tenant"
    flushed = flush(keyed, ALICE)
    assert flushed.status_code == 200, flushed.text
    assert flushed.json() == {"flushed": 1, "exact": 1, "semantic": 0}
    assert stats(keyed)["exact"]["entries"] == 1
    assert decision(keyed, BOB) == "cache_hit"  # Bob's entry survived Alice's flush
    assert decision(keyed, ALICE) == "accept"

    wait_for_entries(keyed, 2)
    everything = flush(keyed, ADMIN)
    assert everything.status_code == 200 and everything.json()["exact"] == 2
    assert stats(keyed)["exact"]["entries"] == 0


def test_models_retrieve_serves_every_listed_model_and_404s_others(keyed: Stack) -> None:
    client = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=ALICE, max_retries=0)
    listed = client.models.list().data
    assert {m.id for m in listed} == {"auto", "drafter", "heavyweight", "fake-drafter", "fake-heavy"}
    for model in listed:
        assert client.models.retrieve(model.id) == model
    auto = client.models.retrieve("auto")
    assert (auto.id, auto.object, auto.owned_by) == ("auto", "model", "draftgate") and auto.created > 0

    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-nonexistent")
    assert missing.value.status_code == 404
    assert missing.value.body == {"message": "The model `gpt-nonexistent` does not exist or you do not have access "
                                             "to it.", "type": "invalid_request_error", "param": None,
                                  "code": "model_not_found"}
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="wrong", max_retries=0).models.retrieve("auto")


def test_models_retrieve_finds_ids_with_a_slash(redis_url: str, fake: FakeUpstream, tmp_path: Path) -> None:
    port = free_port()
    gateway = Service("services.gateway", {"DRAFTGATE_GATEWAY_PORT": str(port), "DRAFTGATE_REDIS_URL": redis_url,
                                           "DRAFTGATE_GATEWAY_CACHE_URL": "null",
                                           "DRAFTGATE_DRAFTER_BASE_URL": fake.url,
                                           "DRAFTGATE_DRAFTER_MODEL": "Qwen/Qwen2.5-0.5B-Instruct"},
                      port, tmp_path / "gateway.log").start()
    try:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
        assert client.models.retrieve("Qwen/Qwen2.5-0.5B-Instruct").id == "Qwen/Qwen2.5-0.5B-Instruct"
    finally:
        gateway.stop()


async def test_every_operator_route_of_the_gateway_needs_an_admin_key(aiohttp_client, redis_url: str) -> None:
    """Whatever routes the gateway has now or gains later: outside /v1/ and the probes, no key is a 401,
    a client key a 403 (or, where the handler is tenant-scoped, it gets through)."""
    config = load_config(env={"DRAFTGATE_REDIS_URL": redis_url, "DRAFTGATE_GATEWAY_CACHE_URL": "null",
                              "DRAFTGATE_GATEWAY_API_KEYS_ENV": "CLIENTS",
                              "DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV": "ADMINS"})
    app = create_app(config, env={"CLIENTS": ALICE, "ADMINS": ADMIN})
    client = await aiohttp_client(app)
    routes = [(route.method, route.resource.canonical) for route in app.router.routes()
              if route.method != "HEAD" and route.resource is not None]
    operator = [(method, path) for method, path in routes if is_operator_path(path)]
    assert ("GET", "/cache/stats") in operator and ("POST", "/cache/flush") in operator
    for method, route in operator:
        path = re.sub(r"\{[^}]+\}", "x", route)  # a dynamic route's parameters ({key_id}, ...) filled in
        assert (await client.request(method, path)).status == 401, path
        as_client = await client.request(method, path, headers=auth(ALICE))
        assert as_client.status not in (401, 500), path
        if as_client.status == 403:
            assert (await as_client.json())["error"]["type"] == "permission_error"
        as_admin = await client.request(method, path, headers=auth(ADMIN))
        assert as_admin.status not in (401, 403, 500), path
    assert (await client.get("/cache/stats", headers=auth(ALICE))).status == 403
