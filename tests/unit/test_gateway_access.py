"""Who may call what: start-up refusals, client and admin keys, operator endpoints (pure)."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from services.gateway.auth import Access, authorize_operator, is_loopback, key_hash, load_access
from services.gateway.handlers import scoped_flush
from services.gateway.operator import is_operator_path
from shared.config import ConfigError, GatewayConfig, StartRefused
from shared.errors import AuthenticationFailed, InvalidRequest, PermissionDenied

KEYS = {"CLIENT_KEYS": "client-one, client-two", "ADMIN_KEYS": "admin-one"}


def gateway(**fields: object) -> GatewayConfig:
    return dataclasses.replace(GatewayConfig(), **fields)


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def test_services_listen_on_loopback_by_default() -> None:
    assert GatewayConfig().host == "127.0.0.1" and is_loopback(GatewayConfig().host)
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.2")] == [True] * 4
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "", "10.0.0.5", "gateway.internal")] == [False] * 5


def test_keyless_loopback_gateway_starts_with_operator_endpoints_open() -> None:
    assert load_access(gateway(), {}) == Access(frozenset(), frozenset(), operators_open=True)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_keyless_gateway_on_a_reachable_host_refuses_to_start_and_says_how(host: str) -> None:
    with pytest.raises(StartRefused) as refused:
        load_access(gateway(host=host), {})
    message = str(refused.value)
    assert message.startswith(f"refusing to start: gateway.host {host} is reachable from other machines")
    assert "gateway.api_keys_env" in message and "gateway.allow_anonymous: true" in message
    assert "\n" not in message


def test_allow_anonymous_serves_without_keys_but_keeps_operator_endpoints_closed() -> None:
    access = load_access(gateway(host="0.0.0.0", allow_anonymous=True), {})
    assert access == Access(frozenset(), frozenset(), operators_open=False)
    with pytest.raises(PermissionDenied, match="no admin keys are configured"):
        authorize_operator({}, access, clients_allowed=True)


def test_client_keys_on_a_reachable_host_start() -> None:
    access = load_access(gateway(host="0.0.0.0", api_keys_env="CLIENT_KEYS", admin_keys_env="ADMIN_KEYS"), KEYS)
    assert access == Access(frozenset({"client-one", "client-two"}), frozenset({"admin-one"}), operators_open=False)


@pytest.mark.parametrize("key", ["api_keys_env", "admin_keys_env"])
@pytest.mark.parametrize("env", [{}, {"NAMED": ""}, {"NAMED": " , "}])
def test_a_keys_variable_that_is_missing_or_empty_is_a_start_up_error(key: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=f"gateway.{key}: the environment variable NAMED is not set or holds no keys"):
        load_access(gateway(**{key: "NAMED"}), env)


def test_a_key_cannot_be_both_a_client_and_an_admin_key() -> None:
    with pytest.raises(ConfigError, match="both a client key and an admin key"):
        load_access(gateway(api_keys_env="A", admin_keys_env="B"), {"A": "same-key,x", "B": "same-key"})


KEYED = Access(frozenset({"client-one"}), frozenset({"admin-one"}), operators_open=False)


@pytest.mark.parametrize("clients_allowed", [False, True])
def test_admin_keys_may_use_every_operator_endpoint(clients_allowed: bool) -> None:
    caller = authorize_operator(bearer("admin-one"), KEYED, clients_allowed=clients_allowed)
    assert caller.admin


def test_a_client_key_is_forbidden_on_admin_endpoints_and_confined_to_its_tenant_elsewhere() -> None:
    with pytest.raises(PermissionDenied) as denied:
        authorize_operator(bearer("client-one"), KEYED, clients_allowed=False)
    assert denied.value.body()["error"]["type"] == "permission_error" and denied.value.status == 403
    caller = authorize_operator(bearer("client-one", **{"X-Tenant-ID": "team-a"}), KEYED, clients_allowed=True)
    assert (caller.admin, caller.tenant) == (False, f"{key_hash('client-one')}:team-a")


@pytest.mark.parametrize("headers", [{}, bearer("wrong"), {"Authorization": "Basic admin-one"}])
def test_missing_or_unknown_keys_are_401s(headers: dict[str, str]) -> None:
    for clients_allowed in (False, True):
        with pytest.raises(AuthenticationFailed):
            authorize_operator(headers, KEYED, clients_allowed=clients_allowed)


def test_without_admin_keys_admin_only_endpoints_are_closed_to_everyone() -> None:
    clients_only = Access(frozenset({"client-one"}), frozenset(), operators_open=False)
    for headers in ({}, bearer("client-one"), bearer("wrong")):
        with pytest.raises(PermissionDenied):
            authorize_operator(headers, clients_only, clients_allowed=False)
    assert not authorize_operator(bearer("client-one"), clients_only, clients_allowed=True).admin


def test_a_client_flush_names_its_own_tenant_and_no_other() -> None:
    assert orjson.loads(scoped_flush(b"", "t1")) == {"tenant": "t1"}
    assert orjson.loads(scoped_flush(b'{"partition": "p"}', "t1")) == {"partition": "p", "tenant": "t1"}
    with pytest.raises(PermissionDenied):
        scoped_flush(b'{"tenant": "someone-else"}', "t1")
    for body in (b"{nope", b"[1]", b"[" * 5000 + b"]" * 5000):
        with pytest.raises(InvalidRequest):
            scoped_flush(body, "t1")


def test_every_route_outside_the_client_api_and_the_probes_is_an_operator_route() -> None:
    assert [is_operator_path(p) for p in ("/cache/stats", "/cache/flush", "/admin/anything")] == [True] * 3
    assert not any(is_operator_path(p) for p in ("/v1/chat/completions", "/v1/models/auto", "/health", "/ready",
                                                  "/metrics", "/openapi.json"))
