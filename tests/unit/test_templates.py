"""Prompt templates: the renderer accepts plain {variables} and escaped braces only, and names
what is wrong."""

from __future__ import annotations

import pytest

from services.gateway.admin_templates import template_from
from services.gateway.template_store import configured
from services.gateway.templates import MissingVariable, Template, TemplateError, check, parse, render, variables
from shared.config import ConfigError, GatewayConfig, TemplateConfig
from shared.errors import InvalidRequest


def test_renders_variables_in_place() -> None:
    assert render("You answer for {company}, in {language}.", {"company": "Acme", "language": "French"}) == \
        "You answer for Acme, in French."


def test_variables_are_listed_once_in_order_of_use() -> None:
    assert variables("{b} and {a} and {b} again") == ("b", "a")


def test_doubled_braces_are_literal_braces() -> None:
    assert render("JSON like {{\"k\": \"{v}\"}}", {"v": "x"}) == 'JSON like {"k": "x"}'
    assert variables("{{not_a_field}}") == ()


def test_a_value_is_inserted_as_text_never_as_a_template() -> None:
    assert render("Hi {name}", {"name": "{other.__class__}"}) == "Hi {other.__class__}"


def test_extra_values_are_ignored() -> None:
    assert render("Hi {name}", {"name": "Ada", "unused": "x"}) == "Hi Ada"


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(MissingVariable) as caught:
        render("{greeting}, {name}", {"greeting": "Hello"})
    assert caught.value.name == "name"


@pytest.mark.parametrize("text", ["{x.__class__}", "{x.__class__.__mro__}", "{x[0]}", "{x!r}", "{x:>10}", "{}",
                                  "{0}", "{ x }", "{x-y}", "a { b", "a } b", "{a{b}}"])
def test_unsafe_or_malformed_fields_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        parse(text)
    with pytest.raises(TemplateError):
        render(text, {"x": "v", "a": "v", "b": "v"})


def test_attribute_access_never_reaches_an_object() -> None:
    # str.format would print the class of the value here; the renderer refuses the template instead.
    assert "{x.__class__}".format(x="v") == "<class 'str'>"
    with pytest.raises(TemplateError):
        Template("t", "{x.__class__}").render({"x": "v"})


@pytest.mark.parametrize("template_id", ["", "-lead", "has space", "a" * 65, "slash/y"])
def test_bad_ids_are_refused(template_id: str) -> None:
    with pytest.raises(TemplateError):
        check(template_id, "text")


def test_an_empty_system_prompt_is_refused() -> None:
    with pytest.raises(TemplateError):
        check("ok", "   ")


def test_a_config_template_that_does_not_parse_stops_the_start_naming_it() -> None:
    config = GatewayConfig(templates=(TemplateConfig("good", "Hi {name}"), TemplateConfig("bad", "Hi {name.x}")))
    with pytest.raises(ConfigError, match=r"gateway\.templates\[1\] \('bad'\)"):
        configured(config)


def test_config_templates_are_read_only_and_listed_with_their_variables() -> None:
    found = configured(GatewayConfig(templates=(TemplateConfig("support", "For {company}", "desk"),)))
    assert found["support"].to_json() == {"id": "support", "system": "For {company}", "description": "desk",
                                          "variables": ["company"], "source": "config"}


@pytest.mark.parametrize(("body", "param"), [
    ({"system": "x"}, "id"),
    ({"id": "t"}, "system"),
    ({"id": 3, "system": "x"}, "id"),
    ({"id": "t", "system": "x", "description": 5}, "description"),
    ({"id": "t", "system": "{a.b}"}, "system"),
    ({"id": "bad id", "system": "x"}, "id"),
])
def test_an_admin_body_that_is_wrong_names_the_field(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        template_from(body)
    assert caught.value.param == param
