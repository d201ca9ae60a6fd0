"""The admission's round trip publishes the request (services/gateway/limits.lua), through the real
processes and the official `openai` client, on Redis 7.x and 6.2: a virtual key's requests after the
first one this gateway admits, and a session's requests, reach the routers in one Redis command, the
session's stored turns read into the request by the script and prepended by the router. What Redis ran
is read with MONITOR, which marks the commands a script ran."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
import redis

from services.gateway.auth import key_digest
from shared.keys import REQUEST_STREAM, virtual_key
from shared.messages import ChatRequest, decode
from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.stack import Stack, start_stack

pytestmark = pytest.mark.redis_flavours

STATIC, ADMIN = "static-client-key-0101", "admin-ops-key-0102"
PUBLISH = f"XADD {REQUEST_STREAM} "


@pytest.fixture(scope="module")
def stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(redis_server, tmp_path_factory.mktemp("admission-publish"), fake,
                          DRAFTGATE_GATEWAY_API_KEYS_ENV="DG_CLIENT_KEYS", DG_CLIENT_KEYS=STATIC,
                          DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV="DG_ADMIN_KEYS", DG_ADMIN_KEYS=ADMIN)
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def scripted(fake: FakeUpstream) -> None:
    fake.script("turn", confident("Noted."))


def new_key(stack: Stack, **spec: object) -> dict[str, Any]:
    response = httpx.post(f"{stack.url}/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10,
                          json={"tenant": "acme", **spec})
    assert response.status_code == 201, response.text
    return response.json()


def commands_while(redis_url: str, action: Callable[[], Any]) -> tuple[Any, list[tuple[str, str]]]:
    """What `action` returned, and every command Redis ran meanwhile: (who ran it: "lua" for a script's
    commands, else the client type), the command as MONITOR prints it). Read until a marker command sent
    after the action comes through, so nothing ran during the action is missed."""
    marker = f"end-of-action-{uuid.uuid4().hex}"
    seen: list[tuple[str, str]] = []
    done = threading.Event()
    with redis.Redis.from_url(redis_url) as monitor_client, monitor_client.monitor() as monitor:

        def listen() -> None:
            for command in monitor.listen():
                if marker in command["command"]:
                    break
                seen.append((command.get("client_type", ""), command["command"]))
            done.set()

        threading.Thread(target=listen, daemon=True).start()
        try:
            result = action()
        finally:
            with redis.Redis.from_url(redis_url) as other:
                other.echo(marker)
            assert done.wait(10), "MONITOR never showed the marker"
    return result, seen


def publications(commands: list[tuple[str, str]]) -> list[str]:
    """Who published a request: "lua" (the admission's script) or the gateway's own command."""
    return ["lua" if who == "lua" else "gateway" for who, command in commands if command.startswith(PUBLISH)]


def last_request(redis_url: str) -> ChatRequest:
    with redis.Redis.from_url(redis_url) as client:
        [(_, fields)] = client.xrevrange(REQUEST_STREAM, count=1)
    return decode(ChatRequest, fields[b"m"])


def turn(stack: Stack, key: str, text: str, session: str | None = None) -> Any:
    api = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)
    return api.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": text}],
        extra_body={"session_id": session} if session else None)


def upstream_messages(fake: FakeUpstream, text: str) -> list[dict[str, Any]]:
    def calls(seen: list[Seen]) -> list[Seen]:
        return [x for x in seen if x.body["messages"][-1]["content"] == text]
    return calls(fake.wait_for(lambda seen: bool(calls(seen))))[0].body["messages"]


def test_a_virtual_keys_requests_after_its_first_are_admitted_and_published_in_one_command(
        stack: Stack, fake: FakeUpstream) -> None:
    key = new_key(stack, rpm=1000)
    session = f"s-{uuid.uuid4().hex[:8]}"
    first, commands = commands_while(stack.redis_url, lambda: turn(stack, key["key"], "first turn", session))
    assert first.status_code == 200
    assert publications(commands) == ["gateway"]  # its tenant is not known here yet: admitted, then published
    second, commands = commands_while(stack.redis_url, lambda: turn(stack, key["key"], "second turn", session))
    assert second.status_code == 200 and second.headers["x-ratelimit-limit-requests"] == "1000"
    assert publications(commands) == ["lua"]  # admission and publication: one command
    assert [c for _, c in commands if c.startswith("LRANGE")] != []  # the session read inside the script
    assert second.headers["X-Session-Id"] == session
    # The router prepended the first turn the script read into the request.
    assert upstream_messages(fake, "second turn") == [{"role": "user", "content": "first turn"},
                                                      {"role": "assistant", "content": "Noted."},
                                                      {"role": "user", "content": "second turn"}]
    published = last_request(stack.redis_url)
    assert published.tenant == "acme" and published.history is not None and len(published.history) == 1


def test_a_static_keys_session_is_read_into_its_request_as_it_is_published(stack: Stack, fake: FakeUpstream) -> None:
    session = f"s-{uuid.uuid4().hex[:8]}"
    assert turn(stack, STATIC, "static first turn", session).status_code == 200
    second, commands = commands_while(stack.redis_url, lambda: turn(stack, STATIC, "static second turn", session))
    assert second.status_code == 200 and publications(commands) == ["lua"]
    assert upstream_messages(fake, "static second turn")[:2] == [{"role": "user", "content": "static first turn"},
                                                                 {"role": "assistant", "content": "Noted."}]
    # Without a session a static key needs no round trip before publishing: the gateway's own XADD.
    _, commands = commands_while(stack.redis_url, lambda: turn(stack, STATIC, "static lone turn"))
    assert publications(commands) == ["gateway"]


def test_a_key_whose_tenant_changed_is_published_with_its_new_tenant_by_the_gateway(stack: Stack) -> None:
    key = new_key(stack)
    assert turn(stack, key["key"], "before the move").status_code == 200  # the gateway learns the tenant: acme
    with redis.Redis.from_url(stack.redis_url) as client:
        client.hset(virtual_key(key_digest(key["key"])), "tenant", "moved")
    moved, commands = commands_while(stack.redis_url, lambda: turn(stack, key["key"], "after the move"))
    assert moved.status_code == 200
    assert publications(commands) == ["gateway"]  # the script admitted it, saw the guess was wrong, published nothing
    assert last_request(stack.redis_url).tenant == "moved"
    _, commands = commands_while(stack.redis_url, lambda: turn(stack, key["key"], "settled in"))
    assert publications(commands) == ["lua"] and last_request(stack.redis_url).tenant == "moved"


def test_a_refused_request_is_never_published(stack: Stack) -> None:
    key = new_key(stack, rpm=1)
    assert turn(stack, key["key"], "the only one").status_code == 200

    def refused() -> int:
        with pytest.raises(openai.RateLimitError) as caught:
            turn(stack, key["key"], "one too many")
        return caught.value.status_code

    status, commands = commands_while(stack.redis_url, refused)
    assert status == 429 and [c for _, c in commands if c.startswith("EVALSHA")] and publications(commands) == []


def test_a_stored_entry_that_is_not_utf8_is_left_out_and_the_request_answered(stack: Stack, fake: FakeUpstream) -> None:
    """Another writer's bytes in a session's list reach the router inside the published request (the script
    packs them as msgpack text): that entry is skipped like any entry that is no turn, and the request is
    answered with the turns around it (before the fix: dropped as undecodable, the client timed out)."""
    session = f"s-{uuid.uuid4().hex[:8]}"
    assert turn(stack, STATIC, "utf8 first turn", session).status_code == 200
    with redis.Redis.from_url(stack.redis_url) as client:
        [list_key] = client.keys(f"*:{session}")
        client.rpush(list_key, b"\xff\xfe not text at all")
    second, commands = commands_while(stack.redis_url, lambda: turn(stack, STATIC, "utf8 second turn", session))
    assert second.status_code == 200 and publications(commands) == ["lua"]
    assert upstream_messages(fake, "utf8 second turn") == [{"role": "user", "content": "utf8 first turn"},
                                                           {"role": "assistant", "content": "Noted."},
                                                           {"role": "user", "content": "utf8 second turn"}]
    assert turn(stack, STATIC, "utf8 third turn", session).status_code == 200  # the session goes on
    assert upstream_messages(fake, "utf8 third turn")[-3:] == [{"role": "user", "content": "utf8 second turn"},
                                                               {"role": "assistant", "content": "Noted."},
                                                               {"role": "user", "content": "utf8 third turn"}]
