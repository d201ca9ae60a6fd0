"""The gateway's analytics endpoints against a real ledger service: who sees what (an admin every
tenant, a static or virtual client key its own tenant), 400s naming the parameter, 503s when the
ledger is away; and the whole path — requests through a real gateway and router to the fake
upstream, their records through Redis into SQL — counted back by /v1/system/analytics."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from aiohttp.test_utils import TestClient

from services.gateway.app import create_app
from services.gateway.auth import tenant_of
from shared.config import load_config
from tests.fakes.upstream import FakeUpstream
from tests.integration.ledger_support import publish, record, requests_counted, start_ledger, wait_for
from tests.integration.stack import ask, running_stack
from tests.support import Service, free_port

ALICE, BOB, ADMIN = "client-alice-key-0001", "client-bob-key-0002", "admin-ops-key-0003"
NOW = time.time()


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


@pytest.fixture
def ledger(redis_url: str, tmp_path: Path) -> Iterator[Service]:
    """A ledger holding 30 records: 15 of Alice's tenant (3 of them from her sub-tenant eu), 9 of Bob's,
    6 of a virtual key's tenant acme; every even one through the template faq (9 of Alice's, 3 of acme's)."""
    service = start_ledger(redis_url, f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}", tmp_path)
    alice, bob = tenant_of(ALICE, {}), tenant_of(BOB, {})
    tenants = [alice, f"{alice}:eu", alice, bob, "acme", bob, alice, "acme", bob, alice] * 3
    publish(redis_url, *(record(i, at=NOW - i, tenant=tenant, key_id=f"key-{tenant[:6]}",
                                template_id="faq" if i % 2 == 0 else "") for i, tenant in enumerate(tenants)))
    wait_for(requests_counted(service, 30), what="30 records in the ledger")
    yield service
    service.stop()


async def gateway(aiohttp_client, redis_url: str, ledger_url: str | None) -> TestClient:
    config = load_config(env={"DRAFTGATE_REDIS_URL": redis_url, "DRAFTGATE_GATEWAY_CACHE_URL": "null",
                              "DRAFTGATE_GATEWAY_LEDGER_URL": ledger_url or "null",
                              "DRAFTGATE_GATEWAY_API_KEYS_ENV": "CLIENTS",
                              "DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV": "ADMINS"})
    return await aiohttp_client(create_app(config, env={"CLIENTS": f"{ALICE},{BOB}", "ADMINS": ADMIN}))


@pytest.fixture
async def client(aiohttp_client, redis_url: str, ledger: Service) -> AsyncIterator[TestClient]:
    yield await gateway(aiohttp_client, redis_url, ledger.url)


async def totals(client: TestClient, key: str, path: str = "/v1/system/analytics", **params: str) -> dict:
    response = await client.get(path, headers=auth(key), params=params)
    assert response.status == 200, await response.text()
    return (await response.json())["totals"]


async def error(response) -> tuple[int, dict]:
    return response.status, (await response.json())["error"]


async def test_an_admin_sees_every_tenant_and_a_client_key_its_own(client: TestClient) -> None:
    alice = tenant_of(ALICE, {})
    assert (await totals(client, ADMIN))["requests"] == 30
    assert (await totals(client, ADMIN, tenant=tenant_of(BOB, {})))["requests"] == 9
    grouped = await client.get("/v1/system/analytics", headers=auth(ADMIN), params={"group_by": "tenant"})
    assert {g["key"]: g["requests"] for g in (await grouped.json())["groups"]} == {
        alice: 12, f"{alice}:eu": 3, tenant_of(BOB, {}): 9, "acme": 6}

    assert (await totals(client, ALICE))["requests"] == 15  # her tenant and its sub-tenant
    assert (await totals(client, ALICE, tenant=alice))["requests"] == 15
    mine = await client.get("/v1/system/analytics", headers=auth(ALICE), params={"group_by": "tenant"})
    assert {g["key"] for g in (await mine.json())["groups"]} == {alice, f"{alice}:eu"}
    assert (await totals(client, BOB))["requests"] == 9
    eu = await client.get("/v1/system/analytics", headers=auth(ALICE, **{"X-Tenant-ID": "eu"}))
    assert (await eu.json())["totals"]["requests"] == 3

    status, body = await error(await client.get("/v1/system/analytics", headers=auth(ALICE),
                                                params={"tenant": tenant_of(BOB, {})}))
    assert (status, body["param"], body["type"]) == (403, "tenant", "permission_error")
    assert (await error(await client.get("/v1/system/analytics")))[0] == 401
    assert (await error(await client.get("/v1/system/analytics", headers=auth("sk-nobody"))))[0] == 401


async def test_a_virtual_key_sees_its_own_tenant(client: TestClient) -> None:
    created = await client.post("/admin/keys", headers=auth(ADMIN), json={"tenant": "acme", "name": "analytics"})
    assert created.status == 201, await created.text()
    key = (await created.json())["key"]
    assert (await totals(client, key))["requests"] == 6
    assert (await totals(client, key, path="/v1/prompts/faq/stats"))["requests"] == 3
    status, body = await error(await client.get("/v1/system/analytics", headers=auth(key), params={"tenant": "x"}))
    assert (status, body["param"]) == (403, "tenant")


async def test_template_stats_are_scoped_the_same_way(client: TestClient) -> None:
    assert (await totals(client, ADMIN, path="/v1/prompts/faq/stats"))["requests"] == 15
    alice = await client.get("/v1/prompts/faq/stats", headers=auth(ALICE))
    body = await alice.json()
    assert body["template_id"] == "faq" and body["totals"]["requests"] == 9
    assert (await totals(client, ADMIN, path="/v1/prompts/no-such-template/stats"))["requests"] == 0
    assert (await totals(client, ADMIN, path="/v1/prompts/f%2Fa%20q/stats"))["requests"] == 0  # quoted on
    status, body = await error(await client.get("/v1/prompts/f%00q/stats", headers=auth(ADMIN)))
    assert (status, body["param"]) == (400, "template_id")
    status, body = await error(await client.get("/v1/system/analytics", headers=auth(ADMIN),
                                                params={"tenant": "a\x00b"}))
    assert (status, body["param"]) == (400, "tenant")


async def test_spend_is_for_admins(client: TestClient) -> None:
    spend = await client.get("/admin/spend", headers=auth(ADMIN))
    assert spend.status == 200
    body = await spend.json()
    assert body["total"]["requests"] == 30 and sum(entry["requests"] for entry in body["keys"]) == 30
    assert {entry["tenant"] for entry in body["tenants"]} >= {"acme", tenant_of(ALICE, {})}
    assert (await error(await client.get("/admin/spend", headers=auth(ALICE))))[0] == 403
    status, body = await error(await client.get("/admin/spend", headers=auth(ADMIN), params={"group_by": "day"}))
    assert (status, body["param"]) == (400, "group_by")


@pytest.mark.parametrize(("params", "param"), [({"from": "last week"}, "from"), ({"to": "soon"}, "to"),
                                               ({"from": "2026-12-02", "to": "2026-12-01"}, "to"),
                                               ({"group_by": "hour"}, "group_by")])
async def test_bad_parameters_are_400s_naming_them_even_with_the_ledger_away(
        aiohttp_client, redis_url: str, params: dict[str, str], param: str) -> None:
    client = await gateway(aiohttp_client, redis_url, f"http://127.0.0.1:{free_port()}")
    for path in ("/v1/system/analytics", "/v1/prompts/faq/stats"):
        status, body = await error(await client.get(path, headers=auth(ALICE), params=params))
        assert (status, body["param"], body["type"]) == (400, param, "invalid_request_error")


async def test_the_ledger_away_or_unconfigured_is_a_503(aiohttp_client, redis_url: str) -> None:
    away = await gateway(aiohttp_client, redis_url, f"http://127.0.0.1:{free_port()}")
    for path, key in (("/v1/system/analytics", ALICE), ("/v1/prompts/faq/stats", ADMIN), ("/admin/spend", ADMIN)):
        status, body = await error(await away.get(path, headers=auth(key)))
        assert (status, body["code"], body["type"]) == (503, "ledger_unavailable", "service_unavailable")
    unconfigured = await gateway(aiohttp_client, redis_url, None)
    status, body = await error(await unconfigured.get("/v1/system/analytics", headers=auth(ADMIN)))
    assert (status, body["code"]) == (503, "ledger_disabled")


def test_requests_through_gateway_and_router_are_counted_by_the_ledger(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    with running_stack(redis_server, tmp_path, fake) as stack:
        ledger = start_ledger(stack.redis_url, f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}", tmp_path)
        try:
            stack.gateway.stop()
            stack.start_gateway(DRAFTGATE_GATEWAY_LEDGER_URL=ledger.url)
            client = stack.client()
            usage = []
            raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask("Question number 0?"))
            request_id = raw.headers["X-Request-ID"]
            usage.append(raw.parse().usage)
            for i in range(1, 6):
                answer = client.chat.completions.create(model="auto", messages=ask(f"Question number {i}?"))
                usage.append(answer.usage)
            for i in range(4):
                chunks = list(client.chat.completions.create(model="auto", messages=ask(f"Stream {i}?"), stream=True,
                                                             stream_options={"include_usage": True}))
                usage.append(next(chunk.usage for chunk in chunks if chunk.usage))
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(model="no-such-model", messages=ask("Hi"))

            def analytics() -> dict | None:
                response = httpx.get(f"{stack.url}/v1/system/analytics", params={"group_by": "day"}, timeout=10)
                body = response.json() if response.status_code == 200 else None
                return body if body and body["totals"]["requests"] == 11 else None

            body = wait_for(analytics, what="11 requests in the gateway's analytics")
            figures = body["totals"]
            assert figures["succeeded"] == 10 and figures["errors"] == 1
            assert figures["decisions"].get("accept") == 10
            assert figures["tokens"]["completion"] == sum(u.completion_tokens for u in usage)
            assert figures["tokens"]["prompt"] == sum(u.prompt_tokens for u in usage)
            assert figures["latency_ms"]["p50"] is not None and figures["ttft_ms"]["p50"] is not None
            assert [g["requests"] for g in body["groups"]] in ([11], [10, 1], [1, 10])  # midnight may fall between

            verdict = httpx.post(f"{stack.url}/v1/feedback", json={"request_id": request_id, "verdict": "bad",
                                                                   "comment": "too short"}, timeout=10)
            assert verdict.status_code == 202, verdict.text

            def feedback() -> list[tuple[str, str, str]]:
                with contextlib.closing(sqlite3.connect(tmp_path / "ledger.db")) as conn:
                    return conn.execute("SELECT f.request_id, f.verdict, r.decision FROM ledger_feedback f "
                                        "JOIN ledger_records r USING (request_id)").fetchall()

            assert wait_for(feedback, what="the verdict stored beside its request") == [(request_id, "bad", "accept")]
        finally:
            ledger.stop()
