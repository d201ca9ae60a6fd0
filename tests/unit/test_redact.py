"""Nothing secret reaches a log line: URLs with credentials, bearer keys, registered secrets, sensitive names."""

from __future__ import annotations

import dataclasses
import io
import json
import logging

import pytest
import structlog

from shared.config import Config, GatewayConfig, LoggingConfig, RedisConfig, UpstreamConfig
from shared.logging import configure_logging
from shared.redact import Redactor, config_secrets, fingerprint, redact_url

KEY = "sk-live-0123456789abcdef"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:p4ss@api.example.com/v1", "https://***@api.example.com/v1"),
    ("redis://:hunter2hunter2@redis:6379/0", "redis://***@redis:6379/0"),
    ("rediss://default:pw@host", "rediss://***@host"),
    ("https://TOKEN123456@host/v1?q=a@b", "https://***@host/v1?q=a@b"),
    ("http://us:er:p@ss@host:80/v1", "http://***@host:80/v1"),
    ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ("http://host/path?email=a@b.c", "http://host/path?email=a@b.c"),
])
def test_credentials_in_urls_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert Redactor().text(f"drafter=m @ {url} next") == f"drafter=m @ {shown} next"


def test_bearer_and_basic_credentials_become_fingerprints() -> None:
    text = Redactor().text(f"headers: {{'Authorization': 'Bearer {KEY}'}} and basic dXNlcjpwYXNz")
    assert KEY not in text and "dXNlcjpwYXNz" not in text
    assert f"Bearer {fingerprint(KEY)}" in text


def test_registered_secrets_are_replaced_wherever_they_appear() -> None:
    redactor = Redactor([KEY, "short"])
    assert redactor.text(f"Error code: 401 - {{'message': 'Incorrect API key provided: {KEY}.'}}") == \
        f"Error code: 401 - {{'message': 'Incorrect API key provided: {fingerprint(KEY)}.'}}"
    assert redactor.text("short words stay") == "short words stay"  # too short to be a secret


def test_values_under_sensitive_names_are_fingerprinted_at_any_depth() -> None:
    redactor = Redactor()
    event = {"event": "upstream failed", "api_key": KEY, "tokens": 12,
             "headers": {"Authorization": "anything-at-all", "X-Api-Key": KEY, "Content-Type": "json"},
             "urls": ["https://a:b@host"]}
    assert redactor.value(event) == {
        "event": "upstream failed", "api_key": fingerprint(KEY), "tokens": 12,
        "headers": {"Authorization": fingerprint("anything-at-all"), "X-Api-Key": fingerprint(KEY),
                    "Content-Type": "json"},
        "urls": ["https://***@host"]}


def test_the_config_names_its_secrets() -> None:
    config = dataclasses.replace(
        Config(), gateway=GatewayConfig(api_keys_env="CLIENTS", admin_keys_env="ADMINS"),
        redis=RedisConfig(url="redis://:redis-password@redis:6379/0"),
        drafter=UpstreamConfig(base_url="https://drafter-user:drafter%40pass@llm/v1", model="m",
                               api_key_env="DRAFTER_KEY"))
    env = {"CLIENTS": "client-key-1,client-key-2", "ADMINS": "admin-key-1", "DRAFTER_KEY": KEY}
    assert set(config_secrets(config, env)) == {
        "client-key-1,client-key-2", "client-key-1", "client-key-2", "admin-key-1", KEY, "redis-password",
        "drafter-user", "drafter@pass"}


@pytest.mark.parametrize("json_lines", [False, True])
def test_configured_logging_redacts_events_tracebacks_and_stdlib_records(
        json_lines: bool, capsys: pytest.CaptureFixture[str]) -> None:
    redactor = Redactor([KEY])
    stdlib = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(stdlib)
    root.addHandler(handler)
    try:
        configure_logging(LoggingConfig(level="info", json=json_lines), "test", redactor)
        log = structlog.get_logger("test")
        log.info("router started", drafter="m @ https://user:p4ssw0rd@llm.example/v1", key=KEY)
        try:
            raise RuntimeError(f"upstream said no to {KEY} at redis://:p4ssw0rd@r/0")
        except RuntimeError:
            log.exception("request failed")
        logging.getLogger("httpx").warning("HTTP Request: POST %s", "https://user:p4ssw0rd@llm.example/v1")
        try:
            raise ValueError(KEY)
        except ValueError:
            logging.getLogger("aiohttp.server").exception("Error handling request")
    finally:
        root.removeHandler(handler)
        structlog.reset_defaults()
    lines = capsys.readouterr().out
    assert "router started" in lines and "request failed" in lines and "RuntimeError" in lines
    if json_lines:
        assert [json.loads(line)["event"] for line in lines.splitlines()] == ["router started", "request failed"]
    logged = lines + stdlib.getvalue()
    assert "p4ssw0rd" not in logged and KEY not in logged
    assert "https://***@llm.example/v1" in logged and fingerprint(KEY) in stdlib.getvalue()
