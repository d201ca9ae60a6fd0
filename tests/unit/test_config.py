"""Config: YAML, environment overrides, derived defaults, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import (
    DEFAULT_CONFIG_PATH,
    LOCAL_MODEL_URL,
    OPENAI_URL,
    ConfigError,
    cache_write_timeout_s,
    load_config,
)

REPO_CONFIG = DEFAULT_CONFIG_PATH


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file_use_the_local_model(tmp_path: Path) -> None:
    config = load_config(tmp_path / "missing.yaml", env={})
    assert config.gateway.port == 8080 and config.gateway.max_body_bytes == 1_048_576
    assert config.routing.entropy_threshold == 2.0 and config.routing.window == 10
    assert config.routing.top_logprobs == 5 and config.routing.early_exit_tokens == 10
    assert config.drafter.base_url == LOCAL_MODEL_URL and config.heavyweight.model == "smollm2"


def test_every_service_listens_on_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.yaml", REPO_CONFIG):
        config = load_config(path, env={})
        assert {config.gateway.host, config.router.host, config.cache.host, config.embedder.host} == {"127.0.0.1"}
        assert (config.gateway.api_keys_env, config.gateway.admin_keys_env) == (None, None)
        assert config.gateway.allow_anonymous is False
    exposed = load_config(REPO_CONFIG, env={"DRAFTGATE_GATEWAY_HOST": "0.0.0.0",
                                            "DRAFTGATE_GATEWAY_ALLOW_ANONYMOUS": "true",
                                            "DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV": "OPS_KEYS"})
    assert (exposed.gateway.host, exposed.gateway.allow_anonymous, exposed.gateway.admin_keys_env) == \
        ("0.0.0.0", True, "OPS_KEYS")


def test_openai_key_switches_unset_tiers_to_openai(tmp_path: Path) -> None:
    config = load_config(tmp_path / "missing.yaml", env={"OPENAI_API_KEY": "sk-test"})
    assert (config.drafter.base_url, config.drafter.model) == (OPENAI_URL, "gpt-4.1-nano")
    assert (config.heavyweight.model, config.heavyweight.api_key_env) == ("gpt-4.1", "OPENAI_API_KEY")


def test_environment_overrides_yaml_with_typed_values(tmp_path: Path) -> None:
    path = write(tmp_path, "routing:\n  window: 8\ndrafter:\n  base_url: http://a/v1\n  model: m\n")
    config = load_config(path, env={"DRAFTGATE_ROUTING_WINDOW": "12", "DRAFTGATE_LOGGING_JSON": "true",
                                    "DRAFTGATE_DRAFTER_BASE_URL": "http://b/v1"})
    assert config.routing.window == 12
    assert config.logging.json is True
    assert config.drafter.base_url == "http://b/v1" and config.drafter.model == "m"


def test_speculation_threshold_defaults_to_seventy_percent_and_null_turns_it_off(tmp_path: Path) -> None:
    two_tiers = "drafter:\n  base_url: http://a/v1\n  model: small\n"
    assert load_config(write(tmp_path, two_tiers + "routing:\n  entropy_threshold: 3.0\n"), env={}) \
        .routing.speculation_threshold == pytest.approx(2.1)
    assert load_config(write(tmp_path, "routing:\n  speculation_threshold: null\n"), env={}) \
        .routing.speculation_threshold is None
    assert load_config(tmp_path / "none.yaml", env={"DRAFTGATE_ROUTING_SPECULATION_THRESHOLD": "null"}) \
        .routing.speculation_threshold is None


def test_speculation_defaults_off_when_both_tiers_are_the_same_model(tmp_path: Path) -> None:
    assert load_config(tmp_path / "none.yaml", env={}).routing.speculation_threshold is None
    assert load_config(tmp_path / "none.yaml", env={"DRAFTGATE_ROUTING_SPECULATION_THRESHOLD": "1.0"}) \
        .routing.speculation_threshold == 1.0
    assert load_config(tmp_path / "none.yaml", env={"OPENAI_API_KEY": "k"}).routing.speculation_threshold == 1.4


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway:\n  port: 9999\n")
    assert load_config(env={"DRAFTGATE_CONFIG": str(path)}).gateway.port == 9999


@pytest.mark.parametrize(("yaml_text", "env", "message"), [
    ("", {"DRAFTGATE_GATEWAY_PORT": "eighty"}, "gateway.port: expected int, got 'eighty'"),
    ("gateway:\n  port: 70000\n", {}, "gateway.port: must be a port number"),
    ("routing:\n  entropy_threshold: -1\n", {}, "routing.entropy_threshold: must be > 0"),
    ("routing:\n  windw: 3\n", {}, "routing.windw: unknown key"),
    ("routng: {}\n", {}, "routng: unknown section"),
    ("redis:\n  url: localhost:6379\n", {}, "redis.url: must start with"),
    ("drafter:\n  base_url: http://x/v1\n", {}, "drafter.model: must be set"),
    ("routing:\n  speculation_threshold: 5\n", {}, "routing.speculation_threshold:"),
    ("gateway: [1]\n", {}, "gateway: must be a mapping"),
    ("gateway:\n  host: 5\n", {}, "gateway.host: expected str, got 5"),
    ("gateway:\n  api_keys_env: 'my keys'\n", {}, "gateway.api_keys_env: must be the name of an environment"),
    ("gateway:\n  admin_keys_env: ''\n", {}, "gateway.admin_keys_env: must be the name of an environment"),
    ("gateway:\n  allow_anonymous: maybe\n", {}, "gateway.allow_anonymous: expected bool, got 'maybe'"),
    ("cache:\n  embedder_write_timeout_s: 0\n", {}, "cache.embedder_write_timeout_s: must be > 0"),
])
def test_invalid_values_name_the_key(tmp_path: Path, yaml_text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(write(tmp_path, yaml_text), env=env)


def test_a_tier_url_with_credentials_and_an_api_key_is_refused(tmp_path: Path) -> None:
    env = {"DRAFTGATE_DRAFTER_BASE_URL": "https://user:pw@llm.example/v1", "DRAFTGATE_DRAFTER_MODEL": "m",
           "DRAFTGATE_DRAFTER_API_KEY_ENV": "DRAFTER_KEY"}
    with pytest.raises(ConfigError, match=r"^drafter\.base_url: carries user:password"):
        load_config(write(tmp_path, ""), env=env)
    env.pop("DRAFTGATE_DRAFTER_API_KEY_ENV")
    assert load_config(write(tmp_path, ""), env=env).drafter.base_url == "https://user:pw@llm.example/v1"


def test_a_cache_write_waits_at_most_half_the_reclaim_idle_time(tmp_path: Path) -> None:
    """A write still embedding must not be reclaimed by another cache replica and stored twice."""
    assert cache_write_timeout_s(load_config(tmp_path / "missing.yaml", env={})) == 5.0
    fast = load_config(tmp_path / "missing.yaml", env={"DRAFTGATE_BUS_RECLAIM_IDLE_MS": "2000"})
    assert cache_write_timeout_s(fast) == 1.0
