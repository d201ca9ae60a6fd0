"""A service with a bad config value stops at start with one line naming the key; a gateway that would
be open to the network without keys stops with one line saying why and how."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import REPO, Service, free_port


@pytest.mark.parametrize("module", ["services.gateway", "services.router"])
def test_invalid_config_stops_the_service_with_one_line(module: str) -> None:
    env = {**os.environ, "DRAFTGATE_ROUTING_WINDOW": "zero"}
    result = subprocess.run([sys.executable, "-m", module], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"draftgate {module.split('.')[1]}: invalid configuration: routing.window: expected int, got 'zero'"]


def run_gateway(**env: str) -> subprocess.CompletedProcess[str]:
    """The gateway process with these settings; it is expected to stop at start (a timeout fails the test)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRAFTGATE_GATEWAY_")}
    return subprocess.run([sys.executable, "-m", "services.gateway"], cwd=REPO, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_gateway_open_to_the_network_without_client_keys_refuses_to_start(host: str) -> None:
    result = run_gateway(DRAFTGATE_GATEWAY_HOST=host, DRAFTGATE_GATEWAY_PORT=str(free_port()))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"draftgate gateway: refusing to start: gateway.host {host} is reachable from other "
                           "machines and no client keys are configured")
    assert "gateway.api_keys_env" in line and "gateway.allow_anonymous: true" in line


@pytest.mark.parametrize(("key", "env"), [
    ("api_keys_env", {"DRAFTGATE_GATEWAY_API_KEYS_ENV": "DG_TEST_MISSING_KEYS"}),
    ("api_keys_env", {"DRAFTGATE_GATEWAY_API_KEYS_ENV": "DG_TEST_KEYS", "DG_TEST_KEYS": " "}),
    ("admin_keys_env", {"DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV": "DG_TEST_MISSING_KEYS"}),
])
def test_a_keys_variable_that_is_missing_or_empty_stops_the_gateway(key: str, env: dict[str, str]) -> None:
    result = run_gateway(**env)
    assert result.returncode == 2
    name = env[f"DRAFTGATE_GATEWAY_{key.upper()}"]
    assert result.stderr.strip().splitlines() == [
        f"draftgate gateway: invalid configuration: gateway.{key}: the environment variable {name} is not set or "
        f"holds no keys (expected comma-separated keys; set gateway.{key}: null for none)"]


@pytest.mark.parametrize("env", [
    {"DRAFTGATE_GATEWAY_ALLOW_ANONYMOUS": "true"},
    {"DRAFTGATE_GATEWAY_API_KEYS_ENV": "DG_TEST_KEYS", "DG_TEST_KEYS": "client-key-1"},
], ids=["anonymous", "keys"])
def test_a_gateway_open_to_the_network_starts_with_keys_or_when_anonymous_is_asked_for(
        env: dict[str, str], redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    gateway = Service("services.gateway", {"DRAFTGATE_GATEWAY_HOST": "0.0.0.0", "DRAFTGATE_GATEWAY_PORT": str(port),
                                           "DRAFTGATE_REDIS_URL": redis_url, "DRAFTGATE_GATEWAY_CACHE_URL": "null",
                                           **env}, port, tmp_path / "gateway.log")
    try:
        gateway.start()
        assert httpx.get(f"{gateway.url}/health", timeout=10).status_code == 200
    finally:
        gateway.stop()


def test_make_run_refuses_before_starting_anything(tmp_path: Path) -> None:
    """`make run` runs the gateway's own check first, so nothing is started just to be stopped."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRAFTGATE_")}
    # Should the check ever pass, a Redis URL nobody answers makes the run stop at once instead.
    env = {**clean, "DRAFTGATE_GATEWAY_HOST": "0.0.0.0", "DRAFTGATE_REDIS_URL": "redis://203.0.113.1:1/0"}
    result = subprocess.run([sys.executable, "-m", "scripts.run"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("draftgate: refusing to start: gateway.host 0.0.0.0")
    assert "starting:" not in result.stdout
