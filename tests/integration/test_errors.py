"""Every client-visible failure is an OpenAI error object with the right status."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.scripts import Script, confident, uncertain
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.raw_client import assert_logged_no_error, open_request, read_until, reset
from tests.integration.stack import Stack, ask, running_stack, start_stack
from tests.support import Service, free_port

HEAVY_ANSWER = "The heavyweight stepped in."


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["param"] == param
    return error


def post(stack: Stack, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/chat/completions", timeout=30, **kwargs)


def test_malformed_json_is_a_400(stack: Stack) -> None:
    error = assert_openai_error(post(stack, content=b'{"messages": [', headers={"Content-Type": "application/json"}),
                                400)
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "auto"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 7}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": True}}, "stream_options"),
    (["not", "an", "object"], None),
])
def test_bad_fields_are_a_400_naming_the_field(stack: Stack, body: object, param: str | None) -> None:
    assert_openai_error(post(stack, json=body), 400, param)


def test_n_greater_than_one_through_the_openai_client(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        stack.client().chat.completions.create(model="auto", messages=ask("hi"), n=2)
    assert caught.value.status_code == 400 and caught.value.param == "n"


def test_body_over_the_limit_is_a_413(stack: Stack) -> None:
    huge = "x" * (1_048_576 + 10)
    assert_openai_error(post(stack, json={"messages": ask(huge)}), 413)


def test_unknown_model_is_a_404(stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        stack.client().chat.completions.create(model="gpt-9", messages=ask("hi"))
    assert caught.value.code == "model_not_found"


def test_unknown_route_is_an_openai_404(stack: Stack) -> None:
    assert_openai_error(httpx.get(f"{stack.url}/v1/nothing-here"), 404)


def test_drafter_failure_falls_back_to_the_heavyweight(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=["x"], status=500))
    fake.script_model("fake-heavy", confident(HEAVY_ANSWER))
    raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("hi"))
    assert raw.headers["X-Routing-Decision"] == "escalate"
    assert raw.parse().choices[0].message.content == HEAVY_ANSWER


@pytest.mark.parametrize("stream", [False, True])
def test_both_tiers_failing_is_a_502(stack: Stack, fake: FakeUpstream, stream: bool) -> None:
    fake.script_model("fake-drafter", Script(tokens=["x"], status=500))
    fake.script_model("fake-heavy", Script(tokens=["x"], status=503))
    response = post(stack, json={"model": "auto", "messages": ask("hi"), "stream": stream})
    error = assert_openai_error(response, 502)
    assert error["type"] == "upstream_error"
    assert "X-Request-ID" in response.headers


def test_upstream_rejecting_the_request_keeps_its_4xx(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-heavy", Script(tokens=["x"], status=400))
    with pytest.raises(openai.BadRequestError):
        stack.client().chat.completions.create(model="heavyweight", messages=ask("hi"))


def test_each_tier_calls_its_upstream_with_its_own_key(redis_server: str, fake: FakeUpstream,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_DRAFTER_KEY", "sk-drafter")
    monkeypatch.setenv("TEST_HEAVY_KEY", "sk-heavy")
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_DRAFTER_API_KEY_ENV="TEST_DRAFTER_KEY",
                       DRAFTGATE_HEAVYWEIGHT_API_KEY_ENV="TEST_HEAVY_KEY") as keyed:
        fake.reset()
        fake.script("needs care", uncertain("unsure", bits=3.0))
        keyed.client().chat.completions.create(model="auto", messages=ask("needs care"))
    seen = fake.wait_for(lambda s: len(s) == 2)
    assert {(s.model, s.authorization) for s in seen} == {("fake-drafter", "Bearer sk-drafter"),
                                                          ("fake-heavy", "Bearer sk-heavy")}


@pytest.fixture(scope="module")
def slow_stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("slow")
    with running_stack(redis_server, logs, fake, DRAFTGATE_GATEWAY_REQUEST_TIMEOUT_S="1") as running:
        yield running


@pytest.mark.parametrize("stream", [False, True])
def test_no_answer_within_the_timeout_is_a_504_and_cancels_upstream(slow_stack: Stack, fake: FakeUpstream,
                                                                   stream: bool) -> None:
    fake.script_model("fake-drafter", confident("too slow", ttft_s=5))
    response = httpx.post(f"{slow_stack.url}/v1/chat/completions", timeout=30,
                          json={"model": "auto", "messages": ask("slow"), "stream": stream})
    error = assert_openai_error(response, 504)
    assert error["type"] == "timeout"
    seen = fake.wait_for(lambda s: bool(s) and s[0].ended is not None, timeout_s=4)
    assert seen[0].closed_early


def test_redis_unreachable_is_a_503(tmp_path: Path) -> None:
    port = free_port()
    gateway = Service("services.gateway", {"DRAFTGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                                           "DRAFTGATE_GATEWAY_PORT": str(port), "DRAFTGATE_GATEWAY_CACHE_URL": "null"},
                      port, tmp_path / "gateway.log").start()
    try:
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json={"messages": ask("hi")}, timeout=30)
        assert_openai_error(response, 503)
        assert httpx.get(f"{gateway.url}/ready").status_code == 503
        assert httpx.get(f"{gateway.url}/health").status_code == 200
    finally:
        gateway.stop()


def test_api_keys_are_enforced_when_configured(redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    running = start_stack(redis_server, tmp_path, fake, DRAFTGATE_GATEWAY_API_KEYS_ENV="DG_KEYS",
                          DG_KEYS="k-one,k-two")
    try:
        url = f"{running.url}/v1"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).chat.completions.create(
                model="auto", messages=ask("hi"))
        answer = openai.OpenAI(base_url=url, api_key="k-two", max_retries=0).chat.completions.create(
            model="auto", messages=ask("hi"))
        assert answer.choices[0].message.content
    finally:
        running.stop()


def test_client_disconnect_mid_stream_cancels_the_upstream(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-heavy", confident("word " * 60, tokens_per_s=20))
    with httpx.stream("POST", f"{stack.url}/v1/chat/completions", timeout=30,
                      json={"model": "heavyweight", "messages": ask("long"), "stream": True}) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]
    assert any(line.startswith("data: ") for line in received)
    seen = fake.wait_for(lambda s: bool(s) and s[0].ended is not None, timeout_s=5)
    assert seen[0].closed_early and seen[0].tokens_sent < 60


# One request model, from validation to the upstream

@pytest.mark.parametrize(("body", "param"), [
    ({"messages": ask("hi"), "stream": "false"}, "stream"),
    ({"messages": ask("hi"), "logprobs": "true"}, "logprobs"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0].image_url"),
    ({"messages": ask("hi"), "tools": [{"type": "function", "function": {"parameters": {}}}]},
     "tools[0].function.name"),
    ({"messages": ask("hi"), "response_format": {"type": "yaml"}}, "response_format.type"),
    ({"messages": ask("hi"), "vendor": {"limits": [1, 2**70]}}, "vendor.limits[1]"),
])
def test_a_wrong_type_is_a_400_and_nothing_reaches_the_upstream(stack: Stack, fake: FakeUpstream,
                                                                  body: dict[str, Any], param: str) -> None:
    for variant in (body, {"stream": True, **body}):
        assert_openai_error(post(stack, json=variant), 400, param)
    assert fake.seen == []


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("content", [b"[" * 1024 + b"]" * 1024, b'{"a":' * 700 + b"1" + b"}" * 700,
                                     json.dumps({"messages": ask("hi"), "vendor": nested(500)}).encode(),
                                     json.dumps({"messages": [{"role": "user", "content": [
                                         {"type": "text", "text": "x", "extra": nested(500)}]}]}).encode()])
def test_json_nested_too_deeply_is_a_400(stack: Stack, fake: FakeUpstream, content: bytes) -> None:
    error = assert_openai_error(post(stack, content=content, headers={"Content-Type": "application/json"}), 400)
    assert error["code"] == "invalid_json"
    assert fake.seen == []


def test_the_upstream_gets_the_clients_request_as_sent(stack: Stack, fake: FakeUpstream) -> None:
    """What the model validated is what travels: fields the client set (typed as it typed them, 1.0
    an integer), unknown fields, aliases ('schema'); nothing the client left out."""
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    body = {"model": "heavyweight", "messages": [{"role": "system", "content": "s", "x-note": 1}, *ask("hi")],
            "temperature": 1, "max_tokens": 8.0, "seed": 7, "stop": None, "tools": [tool], "tool_choice": "auto",
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
            "vendor_extension": {"deep": nested(100)}}
    assert post(stack, json=body).status_code == 200
    [seen] = fake.wait_for(lambda s: len(s) == 1 and s[0].ended is not None)
    sent = {key: value for key, value in body.items() if key not in ("model", "max_tokens")}
    assert seen.body == {**sent, "max_tokens": 8, "model": "fake-heavy", "stream": True,
                         "stream_options": {"include_usage": True}}
    assert type(seen.body["max_tokens"]) is int


# A client that goes away: handled, and the upstream work is cancelled

def disconnects(stack: Stack) -> float:
    metrics = httpx.get(f"{stack.url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("draftgate_client_disconnects_total"))


def cancelled_early(fake: FakeUpstream) -> Seen:
    [seen] = fake.wait_for(lambda s: len(s) == 1 and s[0].ended is not None, timeout_s=10)
    assert seen.closed_early and not seen.completed
    return seen


def test_a_client_resetting_mid_stream_cancels_the_upstream(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-heavy", confident("word " * 60, tokens_per_s=20))
    before = disconnects(stack)
    sock = open_request(stack, {"model": "heavyweight", "messages": ask("long"), "stream": True})
    head = read_until(sock, b"data: ", count=3)
    assert head.startswith(b"HTTP/1.1 200") and b"X-Routing-Tier: heavyweight" in head
    reset(sock)
    assert cancelled_early(fake).tokens_sent < 60
    assert disconnects(stack) == before + 1
    assert_logged_no_error(stack)


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_resetting_before_its_answer_cancels_the_upstream(stack: Stack, fake: FakeUpstream,
                                                                   stream: bool) -> None:
    fake.script_model("fake-drafter", confident("slow to start", ttft_s=5))
    before = disconnects(stack)
    sock = open_request(stack, {"model": "auto", "messages": ask("wait"), "stream": stream})
    fake.wait_for(lambda s: len(s) == 1)  # the router is drafting
    reset(sock)
    cancelled_early(fake)
    assert disconnects(stack) == before + 1
    assert_logged_no_error(stack)
    assert stack.client().chat.completions.create(model="heavyweight", messages=ask("still fine?"))


def test_a_client_resetting_while_sending_its_body_is_no_error(stack: Stack, fake: FakeUpstream) -> None:
    assert stack.gateway is not None
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", stack.gateway.port), timeout=30)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                     b'Content-Length: 4096\r\n\r\n{"messages": [{"role": "user", "content": "half')
        reset(sock)
    assert stack.client().chat.completions.create(model="auto", messages=ask("after them"))
    assert len(fake.seen) == 1
    assert_logged_no_error(stack)
