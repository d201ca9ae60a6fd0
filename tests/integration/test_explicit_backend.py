"""A client naming one deployment — in the path (/v1/{deployment}/chat/completions), the body's
`backend`, `metadata.deployment`, or `model` — gets that deployment alone, with no entropy routing,
through a real gateway and router against the fake upstream and the official openai client."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.stack import Stack, ask, start_stack

ANSWERS = {"heavy-a": confident(" from a"), "heavy-b": confident(" from b"), "fake-drafter": confident(" drafted")}


@pytest.fixture(scope="module")
def stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    deployments = [{"name": name, "base_url": fake.url, "model": name} for name in ("heavy-a", "heavy-b")]
    started = start_stack(redis_server, tmp_path_factory.mktemp("backend"), fake,
                          DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=json.dumps(deployments))
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def scripted(fake: FakeUpstream) -> None:
    for model, script in ANSWERS.items():
        fake.script_model(model, script)


def only_call(fake: FakeUpstream) -> Seen:
    (seen,) = fake.wait_for(lambda s: len(s) == 1 and s[0].ended is not None)
    return seen


def test_the_path_names_the_deployment(stack: Stack, fake: FakeUpstream) -> None:
    client = openai.OpenAI(base_url=f"{stack.url}/v1/heavy-b", api_key="test-key", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask("q"))
    assert raw.parse().choices[0].message.content == ANSWERS["heavy-b"].text
    assert raw.headers["X-Routing-Decision"] == "forced"
    assert raw.headers["X-Routing-Deployment"] == "heavy-b"
    assert raw.headers["X-Routing-Tier"] == "heavyweight"
    assert only_call(fake).model == "heavy-b"


def test_a_streamed_answer_from_the_path_form(stack: Stack, fake: FakeUpstream) -> None:
    client = openai.OpenAI(base_url=f"{stack.url}/v1/heavy-a", api_key="test-key", max_retries=0)
    with client.chat.completions.with_streaming_response.create(model="auto", messages=ask("q"),
                                                                stream=True) as response:
        assert response.headers["X-Routing-Deployment"] == "heavy-a"
        assert response.headers["X-Routing-Decision"] == "forced"
        text = "".join(part.choices[0].delta.content or "" for part in response.parse() if part.choices)
    assert text == ANSWERS["heavy-a"].text
    assert only_call(fake).model == "heavy-a"


def test_the_backend_field_names_the_deployment_and_is_not_sent_upstream(stack: Stack, fake: FakeUpstream) -> None:
    raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("q"),
                                                                  extra_body={"backend": "heavy-a"})
    assert raw.parse().choices[0].message.content == ANSWERS["heavy-a"].text
    assert raw.headers["X-Routing-Deployment"] == "heavy-a"
    seen = only_call(fake)
    assert seen.model == "heavy-a" and "backend" not in seen.body


def test_metadata_deployment_names_it_and_the_rest_of_the_metadata_goes_on(stack: Stack, fake: FakeUpstream) -> None:
    raw = stack.client().chat.completions.with_raw_response.create(
        messages=ask("q"), model="auto", metadata={"deployment": "drafter", "team": "search"})
    assert raw.parse().choices[0].message.content == ANSWERS["fake-drafter"].text
    assert raw.headers["X-Routing-Deployment"] == "drafter"
    assert raw.headers["X-Routing-Tier"] == "drafter"
    assert "X-Draft-Entropy" not in raw.headers or raw.headers["X-Draft-Entropy"] == "0.000"
    seen = only_call(fake)
    assert seen.model == "fake-drafter" and seen.body["metadata"] == {"team": "search"}
    assert "logprobs" not in seen.body  # not drafted: no entropy routing


def test_a_deployment_named_as_the_model(stack: Stack, fake: FakeUpstream) -> None:
    raw = stack.client().chat.completions.with_raw_response.create(model="heavy-b", messages=ask("q"))
    assert raw.headers["X-Routing-Deployment"] == "heavy-b"
    assert only_call(fake).model == "heavy-b"


@pytest.mark.parametrize("where", ["path", "backend", "metadata"])
def test_an_unknown_deployment_is_a_404_naming_it(stack: Stack, fake: FakeUpstream, where: str) -> None:
    base = f"{stack.url}/v1/nope" if where == "path" else f"{stack.url}/v1"
    client = openai.OpenAI(base_url=base, api_key="test-key", max_retries=0)
    extra = {"backend": {"backend": "nope"}, "metadata": {"metadata": {"deployment": "nope"}}}.get(where, {})
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="auto", messages=ask("q"), extra_body=extra)
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "model_not_found" and "`nope`" in error["message"]
    assert error["param"] == {"path": None, "backend": "backend", "metadata": "metadata.deployment"}[where]
    assert fake.seen == []


def test_models_lists_the_deployments(stack: Stack) -> None:
    ids = {model.id for model in stack.client().models.list()}
    assert {"heavy-a", "heavy-b", "drafter", "heavyweight", "auto"} <= ids
    assert stack.client().models.retrieve("heavy-a").id == "heavy-a"
