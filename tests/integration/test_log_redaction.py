"""Nothing secret reaches a service's log: a router and gateway started with a password in the Redis URL,
credentials in a tier's base URL, an upstream key and client keys, then driven through an answer and an
upstream failure at debug level, log none of them; the router's start-up line shows the URL redacted."""

from __future__ import annotations

import base64
from pathlib import Path

import openai
import pytest

from tests.fakes.scripts import Script, confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import ask, running_stack

REDIS_PASSWORD = "redis-pass-4321-secret"
URL_PASSWORD = "drafter-pass-1234-secret"
UPSTREAM_KEY = "sk-heavy-5678-secret-key"
CLIENT_KEY = "client-9999-secret-key"


def test_no_secret_reaches_a_log(redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    # Redis accepts any password for its password-less default user, so the URL carries a real one.
    redis_url = redis_server.replace("redis://", f"redis://default:{REDIS_PASSWORD}@")
    drafter_url = fake.url.replace("http://", f"http://drafter-user:{URL_PASSWORD}@")
    fake.script_model("fake-heavy", confident("Fine."))
    with running_stack(redis_url, tmp_path, fake, DRAFTGATE_LOGGING_LEVEL="debug",
                       DRAFTGATE_DRAFTER_BASE_URL=drafter_url,
                       DRAFTGATE_HEAVYWEIGHT_API_KEY_ENV="DG_HEAVY_KEY", DG_HEAVY_KEY=UPSTREAM_KEY,
                       DRAFTGATE_GATEWAY_API_KEYS_ENV="DG_CLIENT_KEYS", DG_CLIENT_KEYS=CLIENT_KEY) as stack:
        client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=CLIENT_KEY, max_retries=0)
        answer = client.chat.completions.create(model="heavyweight", messages=ask("hello"))
        assert answer.choices[0].message.content == "Fine."
        fake.script_model("fake-heavy", Script(tokens=["x"], status=500))
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="heavyweight", messages=ask("fail, please"))
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{stack.url}/v1", api_key=f"{CLIENT_KEY}-wrong", max_retries=0) \
                .chat.completions.create(model="auto", messages=ask("hi"))
        assert fake.seen[0].model == "fake-heavy"
        # The drafter's URL credentials reach it as Basic auth, not as a broken URL.
        drafted = client.chat.completions.create(model="drafter", messages=ask("hello"))
        assert drafted.choices[0].message.content
        expected = base64.b64encode(f"drafter-user:{URL_PASSWORD}".encode()).decode()
        assert fake.seen[-1].authorization == f"Basic {expected}"
    router_log, gateway_log = (tmp_path / "router-0.log").read_text(), (tmp_path / "gateway.log").read_text()
    assert "router started" in router_log and "upstream failed" in router_log
    assert f"fake-drafter @ {drafter_url.replace(f'drafter-user:{URL_PASSWORD}', '***')}" in router_log
    for secret in (REDIS_PASSWORD, URL_PASSWORD, "drafter-user", UPSTREAM_KEY, CLIENT_KEY):
        assert secret not in router_log and secret not in gateway_log, secret
