"""Who may call what, decided from the keys alone (pure: no aiohttp here).

Client keys (`gateway.api_keys_env`) use the OpenAI API; admin keys (`gateway.admin_keys_env`) use
the operator endpoints. A tenant is derived from the caller's key, so no caller can read or flush
another key's cache entries by naming its tenant.

Virtual keys (`sk-dg-...`, services/gateway/keys/) live in Redis: `identify` only says that one must
be looked up (a KeyLookup); services/gateway/limits.py looks it up, checks its models, limits and
budget in one round trip, and makes the Principal. Without static client keys (open mode: `make run`
on loopback, or allow_anonymous) any bearer token is served anonymously until the first virtual key
exists; from then on only keys are (a token that is no key is a 401), and a virtual key always gets
its own limits.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import ConfigError, GatewayConfig, StartRefused
from shared.errors import AuthenticationFailed, PermissionDenied


@dataclass(frozen=True)
class Access:
    client_keys: frozenset[str]
    admin_keys: frozenset[str]
    # No key of either kind and bound on loopback (`make run`): whoever can connect is the
    # machine's own user, so the operator endpoints are theirs.
    operators_open: bool


VIRTUAL_KEY_PREFIX = "sk-dg-"  # every virtual key starts so; other tokens are static keys (or none)


@dataclass(frozen=True)
class KeyLimits:
    """A virtual key's limits; None: that limit is off."""

    rpm: int | None = None
    tpm: int | None = None
    budget_usd_day: float | None = None
    budget_usd_month: float | None = None

    @property
    def any(self) -> bool:
        return any(value is not None for value in (self.rpm, self.tpm, self.budget_usd_day, self.budget_usd_month))


NO_LIMITS = KeyLimits()


@dataclass(frozen=True)
class Principal:
    """Who is calling the API, as admitted: a virtual key (with its limits), a static key or nobody."""

    key_id: str  # the virtual key's id, the static key's hash (key_hash); "" anonymous
    tenant: str  # the key's tenant (virtual: as created; static: its hash), ":<X-Tenant-ID>" appended if sent
    virtual: bool = False
    limits: KeyLimits = NO_LIMITS
    # The key's buckets just after this request was admitted (requests, tokens): its x-ratelimit-* headers.
    used_requests: float = 0.0
    used_tokens: float = 0.0


@dataclass(frozen=True)
class KeyLookup:
    """A token that only Redis can judge: a virtual key, or (open mode) whatever a caller sent."""

    digest: str  # SHA-256 (hex) of the token: the key record's name
    key_id: str  # the id the key has if it is one (derived from the digest)
    sub_tenant: str  # X-Tenant-ID, appended to the key's tenant
    open: bool  # open mode: an unknown token is anonymous while no virtual key exists
    anonymous_tenant: str  # the tenant it is served as then (tenant_of the token)
    virtual: bool = True  # the token looks like a virtual key (sk-dg-...); else only open mode asks

    def tenant_of_key(self, record_tenant: str) -> str:
        """The tenant the key's requests go by: its record's, with the X-Tenant-ID sent appended."""
        return f"{record_tenant}:{self.sub_tenant}" if self.sub_tenant else record_tenant


@functools.lru_cache(maxsize=4096)  # the tokens a gateway sees again and again: one hash each
def key_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def virtual_key_id(digest: str) -> str:
    """A virtual key's id: named by its hash, so every Redis key the admission touches is known before it."""
    return f"vk_{digest[:16]}"


def identify(headers: Mapping[str, str], client_keys: frozenset[str], virtual_keys: bool) -> Principal | KeyLookup:
    """Who the bearer token says the caller is, without I/O: a static key or an anonymous caller is
    settled here; a virtual key (or any token in open mode once virtual keys are on) needs a lookup.
    A token that can be no key at all in keyed mode is a 401 here."""
    token = bearer_token(headers)
    if token and token in client_keys:
        return Principal(key_id=key_hash(token), tenant=tenant_of(token, headers))
    if virtual_keys and (token.startswith(VIRTUAL_KEY_PREFIX) or not client_keys):
        digest = key_digest(token)
        return KeyLookup(digest=digest, key_id=virtual_key_id(digest),
                         sub_tenant=headers.get("X-Tenant-ID", "").strip(), open=not client_keys,
                         anonymous_tenant=tenant_of(token, headers), virtual=token.startswith(VIRTUAL_KEY_PREFIX))
    if client_keys:
        raise invalid_key(bool(token))
    return Principal(key_id="", tenant=tenant_of(token, headers))


def invalid_key(given: bool, reason: str = "") -> AuthenticationFailed:
    """401 invalid_api_key: no key, or one that is not (or no longer) valid."""
    if not given:
        return AuthenticationFailed("You didn't provide an API key.", code="invalid_api_key")
    return AuthenticationFailed(f"Incorrect API key provided{f' ({reason})' if reason else ''}.",
                                code="invalid_api_key")


@dataclass(frozen=True)
class Caller:
    """Who called an operator endpoint: an admin, or a client confined to its own tenant."""

    admin: bool
    tenant: str


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost, or "" (every interface)
        return False


def load_keys(key: str, env_name: str | None, env: Mapping[str, str]) -> frozenset[str]:
    """The comma-separated keys in the named variable; naming an unset or empty one is an error,
    never a silent "no auth"."""
    if env_name is None:
        return frozenset()
    keys = frozenset(part.strip() for part in env.get(env_name, "").split(",") if part.strip())
    if not keys:
        raise ConfigError(f"gateway.{key}: the environment variable {env_name} is not set or holds no keys "
                          f"(expected comma-separated keys; set gateway.{key}: null for none)")
    return keys


def load_access(config: GatewayConfig, env: Mapping[str, str]) -> Access:
    """The gateway's keys, or ConfigError / StartRefused: a gateway that anyone on the network
    could use for free does not start unless that is asked for in so many words."""
    clients = load_keys("api_keys_env", config.api_keys_env, env)
    admins = load_keys("admin_keys_env", config.admin_keys_env, env)
    if clients & admins:
        raise ConfigError("gateway.admin_keys_env: a key is both a client key and an admin key; "
                          "give operators keys of their own")
    loopback = is_loopback(config.host)
    if not clients and not loopback and not config.allow_anonymous:
        raise StartRefused(
            f"refusing to start: gateway.host {config.host or '(every interface)'} is reachable from other machines "
            "and no client keys are configured, so anyone who can reach it could spend your upstream credits. "
            "Set gateway.api_keys_env to a variable holding comma-separated keys (DRAFTGATE_GATEWAY_API_KEYS_ENV), "
            "or gateway.allow_anonymous: true to serve without keys, or gateway.host: 127.0.0.1")
    return Access(clients, admins, operators_open=loopback and not clients and not admins)


def bearer_token(headers: Mapping[str, str]) -> str:
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@functools.lru_cache(maxsize=4096)
def key_hash(token: str) -> str:
    """What identifies a key wherever it must be named (tenants, logs): never the key itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def tenant_of(token: str, headers: Mapping[str, str]) -> str:
    tenant = key_hash(token) if token else ""
    sub_tenant = headers.get("X-Tenant-ID", "").strip()
    return f"{tenant}:{sub_tenant}" if sub_tenant else tenant


def authenticate(headers: Mapping[str, str], keys: frozenset[str]) -> str:
    """Check the client key when keys are configured; return the caller's tenant id."""
    token = bearer_token(headers)
    if keys and token not in keys:
        raise AuthenticationFailed("Incorrect API key provided." if token else "You didn't provide an API key.",
                                   code="invalid_api_key")
    return tenant_of(token, headers)


def authorize_operator(headers: Mapping[str, str], access: Access, *, clients_allowed: bool) -> Caller:
    """An admin key (or open loopback mode) may do anything; a client key only what an endpoint
    scopes to the caller's own tenant (`clients_allowed`). Missing or unknown key: 401; a key
    without the permission, or no key that could ever have it: 403."""
    token = bearer_token(headers)
    if (token and token in access.admin_keys) or access.operators_open:
        return Caller(admin=True, tenant="")
    if token and token in access.client_keys:
        if clients_allowed:
            return Caller(admin=False, tenant=tenant_of(token, headers))
        raise PermissionDenied("This endpoint needs an admin key (gateway.admin_keys_env); a client key may only "
                               "flush its own tenant's cache entries.", code="admin_key_required")
    if not access.admin_keys and not (clients_allowed and access.client_keys):
        raise PermissionDenied("Operator endpoints are closed: no admin keys are configured "
                               "(set gateway.admin_keys_env).", code="admin_keys_not_configured")
    raise AuthenticationFailed("Incorrect API key provided." if token else "You didn't provide an API key.",
                               code="invalid_api_key")
