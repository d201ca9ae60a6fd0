"""Streaming fallbacks that fire (issue #12's "known failure of other gateways"): a heavyweight
stream that fails after its 200 but before its first token (an error event, or a body cut short)
(an OpenAI-wire one, or an Anthropic one overloaded after its message_start) falls back, along the
tier's `fallbacks`, to a deployment of another provider (a Gemini-wire
deployment of the drafter tier), and the client, reading a stream with the official `openai` client,
gets that deployment's answer whole and nothing of the failed one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.scripts import Script, confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import ask, running_stack
from tests.integration.test_progressive import metric, wait_for_metric

RESCUE = confident(" the fallback answered this one")


@pytest.mark.parametrize(("provider", "broken"), [
    ("openai", Script(tokens=[" never", " shown"], stream_error=503, garbage_after=0)),
    ("openai", Script(tokens=[" never", " shown"], garbage="truncated", garbage_after=0)),
    ("anthropic", Script(tokens=[" never", " shown"], stream_error=529, garbage_after=0)),
], ids=["error_event_before_the_first_token", "cut_before_the_first_token", "anthropic_overloaded_after_message_start"])
def test_a_stream_failing_before_its_first_token_falls_back_to_another_provider_s_deployment(
        redis_server: str, fake: FakeUpstream, tmp_path: Path, provider: str, broken: Script) -> None:
    fake.script_model("heavy-a", broken)
    fake.script_model("gemini-rescue", RESCUE)
    drafters = json.dumps([{"name": "drafter", "base_url": fake.url, "model": "fake-drafter"},
                           {"name": "gem-rescue", "provider": "gemini", "base_url": fake.origin,
                            "model": "gemini-rescue", "api_key_env": "TEST_GEMINI_KEY"}])
    heavy = {"name": "heavy-a", "provider": provider, "model": "heavy-a",
             "base_url": fake.url if provider == "openai" else fake.origin}
    if provider == "anthropic":
        heavy["api_key_env"] = "TEST_ANTHROPIC_KEY"
    with running_stack(redis_server, tmp_path, fake, DRAFTGATE_DRAFTER_DEPLOYMENTS=drafters,
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=json.dumps([heavy]), DRAFTGATE_HEAVYWEIGHT_RETRIES="0",
                       DRAFTGATE_HEAVYWEIGHT_FALLBACKS="gem-rescue", TEST_GEMINI_KEY="AIza-test",
                       TEST_ANTHROPIC_KEY="sk-ant-test") as stack:
        parts = list(stack.client().chat.completions.create(model="heavyweight", messages=ask("q"), stream=True))
        text = "".join(part.choices[0].delta.content or "" for part in parts if part.choices)
        assert text == RESCUE.text
        assert [part.choices[0].finish_reason for part in parts if part.choices][-1] == "stop"
        assert [(s.api, s.model, s.stream) for s in fake.seen] == [(provider, "heavy-a", True),
                                                                    ("gemini", "gemini-rescue", True)]
        router = stack.routers[0].url
        wait_for_metric(router, 'draftgate_upstream_fallbacks_total{fallback="gem-rescue",tier="heavyweight"}', 1)
        assert metric(router, 'draftgate_upstream_calls_total{deployment="heavy-a",outcome="failed",'
                      'tier="heavyweight"}') == 1
