"""A tier's deployments in the config: the single-endpoint form, inheritance, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_single_endpoint_form_is_one_deployment_named_after_the_tier(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "heavyweight: {base_url: 'http://h:1/v1', model: big}\n"), {})
    (only,) = config.heavyweight.deployments
    assert (only.name, only.base_url, only.model, only.provider) == ("heavyweight", "http://h:1/v1", "big", "openai")


def test_deployments_inherit_the_tier_keys_they_leave_unset(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
heavyweight:
  base_url: http://h:1/v1
  timeout_s: 7
  deployments:
    - {name: a, model: big}
    - {name: b, model: big, base_url: 'http://other:2/v1', rpm: 60, weight: 3}
    - {name: c, provider: anthropic, model: claude-x}
"""), {})
    a, b, c = config.heavyweight.deployments
    assert (a.base_url, a.timeout_s, b.base_url, b.rpm, b.weight) == ("http://h:1/v1", 7, "http://other:2/v1", 60, 3)
    assert (c.base_url, c.api_key_env) == ("https://api.anthropic.com", "ANTHROPIC_API_KEY")
    assert config.heavyweight.model == "big"


def test_deployments_from_the_environment(tmp_path: Path) -> None:
    env = {"DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS": '[{"name": "x", "base_url": "http://x:1/v1", "model": "m"}]',
           "DRAFTGATE_HEAVYWEIGHT_FALLBACKS": "drafter"}
    config = load_config(write(tmp_path, ""), env)
    assert [d.name for d in config.heavyweight.deployments] == ["x"]
    assert config.heavyweight.fallbacks == ("drafter",)


@pytest.mark.parametrize(("yaml", "message"), [
    ("heavyweight: {deployments: [{name: a, model: m}, {name: b, model: m, provider: nope}]}",
     "heavyweight.deployments[1].provider: must be one of"),
    ("heavyweight: {deployments: [{name: a, model: m, colour: red}]}",
     "heavyweight.deployments[0].colour: unknown key"),
    ("heavyweight: {deployments: [{name: a, model: m}, {name: a, model: m}]}", "heavyweight.deployments[1].name"),
    ("heavyweight: {deployments: [{model: m}]}", "heavyweight.deployments[0].name: must be set"),
    ("drafter: {deployments: [{name: a, model: m}, {name: c, provider: anthropic, model: x}]}",
     "drafter.deployments[1].provider: 'anthropic' cannot be a drafter deployment"),
    ("heavyweight: {balancing: fastest}", "heavyweight.balancing: must be one of"),
    ("heavyweight: {fallbacks: [nowhere]}", "heavyweight.fallbacks[0]: 'nowhere' is neither"),
    ("heavyweight: {deployments: {name: a}}", "heavyweight.deployments: must be a list"),
])
def test_a_bad_deployment_key_is_named(tmp_path: Path, yaml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_config(write(tmp_path, yaml), {})
