"""Every client-visible failure is an OpenAI error object with the right status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakes.scripts import Script, confident, uncertain
from tests.fakes.upstream import FakeUpstream
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
