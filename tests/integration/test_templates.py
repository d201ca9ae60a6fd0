"""Prompt templates through a real gateway and router with the official openai client: a config
template and one added through the admin API rendered as the system prompt, their errors (missing
variable, unknown template, unsafe format), and the admin API's rules."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.stack import Stack, ask, start_stack

CLIENT_KEY, ADMIN_KEY = "tpl-client", "tpl-admin"
CONFIGURED = [{"id": "support", "system": "You answer for {company} in {language}. Braces: {{ok}}.",
               "description": "the support desk"}]


@pytest.fixture(scope="module")
def stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(redis_server, tmp_path_factory.mktemp("templates"), fake,
                          DRAFTGATE_GATEWAY_TEMPLATES=json.dumps(CONFIGURED),
                          DRAFTGATE_GATEWAY_API_KEYS_ENV="TPL_CLIENT_KEYS", TPL_CLIENT_KEYS=CLIENT_KEY,
                          DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV="TPL_ADMIN_KEYS", TPL_ADMIN_KEYS=ADMIN_KEY)
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def scripted(fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", confident("Happy to help."))


@pytest.fixture
def api(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=CLIENT_KEY, max_retries=0)


def admin(stack: Stack, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, f"{stack.url}{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                         timeout=10, **kwargs)  # type: ignore[arg-type]


def first_call(fake: FakeUpstream) -> Seen:
    return fake.wait_for(lambda seen: len(seen) >= 1)[0]


def test_a_config_template_becomes_the_system_prompt(api: openai.OpenAI, fake: FakeUpstream) -> None:
    answer = api.chat.completions.create(
        model="auto", messages=[{"role": "system", "content": "Mine."}, *ask("Where is my order?")],
        metadata={"template_id": "support", "team": "web"},
        extra_body={"variables": {"company": "Acme", "language": "French"}})
    assert answer.choices[0].message.content == "Happy to help."
    seen = first_call(fake)
    assert seen.body["messages"] == [{"role": "system", "content": "You answer for Acme in French. Braces: {ok}."},
                                     {"role": "system", "content": "Mine."}, *ask("Where is my order?")]
    # draftgate's fields stay at the gateway; the client's own metadata goes on
    assert "variables" not in seen.body
    assert seen.body["metadata"] == {"team": "web"}


def test_a_missing_variable_is_a_400_naming_it(api: openai.OpenAI, fake: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(model="auto", messages=ask("hi"), metadata={"template_id": "support"},
                                    extra_body={"variables": {"company": "Acme"}})
    assert caught.value.body["param"] == "variables.language"
    assert caught.value.body["code"] == "missing_template_variable"
    assert "language" in caught.value.body["message"]
    assert fake.seen == []


def test_an_unknown_template_is_a_404_naming_it(api: openai.OpenAI, fake: FakeUpstream) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        api.chat.completions.create(model="auto", messages=ask("hi"), metadata={"template_id": "nope"})
    assert caught.value.body["param"] == "metadata.template_id"
    assert caught.value.body["code"] == "template_not_found"
    assert "nope" in caught.value.body["message"]
    assert fake.seen == []


def test_variables_without_a_template_are_a_400(api: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(model="auto", messages=ask("hi"), extra_body={"variables": {"a": "b"}})
    assert caught.value.body["param"] == "variables"


def test_a_variable_that_is_not_a_string_is_a_400_naming_it(api: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(model="auto", messages=ask("hi"), metadata={"template_id": "support"},
                                    extra_body={"variables": {"company": 3, "language": "x"}})
    assert caught.value.body["param"] == "variables.company"


def test_a_template_added_through_the_admin_api_is_used_then_deleted(stack: Stack, api: openai.OpenAI,
                                                                      fake: FakeUpstream) -> None:
    created = admin(stack, "POST", "/admin/templates",
                    json={"id": "sales", "system": "Sell {product}.", "description": "upsell"})
    assert created.status_code == 201, created.text
    assert created.json()["variables"] == ["product"]
    listed = {t["id"]: t["source"] for t in admin(stack, "GET", "/admin/templates").json()["data"]}
    assert listed == {"support": "config", "sales": "api"}
    api.chat.completions.create(model="auto", messages=ask("hi"), metadata={"template_id": "sales"},
                                extra_body={"variables": {"product": "tea"}})
    assert first_call(fake).body["messages"][0] == {"role": "system", "content": "Sell tea."}
    replaced = admin(stack, "POST", "/admin/templates", json={"id": "sales", "system": "Sell {product} now."})
    assert replaced.status_code == 200
    assert admin(stack, "DELETE", "/admin/templates/sales").status_code == 200
    assert admin(stack, "GET", "/admin/templates/sales").status_code == 404
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="auto", messages=ask("hi"), metadata={"template_id": "sales"})


@pytest.mark.parametrize("system", ["{x.__class__}", "{x.__class__.__init__.__globals__}", "{x[0]}", "{x!r}",
                                    "{0}", "open {"])
def test_an_unsafe_format_is_refused_when_added(stack: Stack, system: str) -> None:
    response = admin(stack, "POST", "/admin/templates", json={"id": "evil", "system": system})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "system"
    assert admin(stack, "GET", "/admin/templates/evil").status_code == 404


def test_config_templates_are_read_only(stack: Stack) -> None:
    assert admin(stack, "POST", "/admin/templates", json={"id": "support", "system": "x"}).status_code == 409
    assert admin(stack, "DELETE", "/admin/templates/support").status_code == 409
    assert admin(stack, "GET", "/admin/templates/support").json()["source"] == "config"


def test_the_admin_api_needs_an_admin_key(stack: Stack) -> None:
    client_call = httpx.get(f"{stack.url}/admin/templates", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert client_call.status_code == 403
    assert httpx.get(f"{stack.url}/admin/templates").status_code == 401
