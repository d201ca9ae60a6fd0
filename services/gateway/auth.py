"""Client keys and tenants. A tenant is derived from the caller's key, so no caller can
read another key's cache entries by naming its tenant."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from shared.config import GatewayConfig
from shared.errors import AuthenticationFailed


def load_api_keys(config: GatewayConfig, env: Mapping[str, str]) -> frozenset[str]:
    if not config.api_keys_env:
        return frozenset()
    return frozenset(key.strip() for key in env.get(config.api_keys_env, "").split(",") if key.strip())


def bearer_token(headers: Mapping[str, str]) -> str:
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def authenticate(headers: Mapping[str, str], keys: frozenset[str]) -> str:
    """Check the key when keys are configured; return the caller's tenant id."""
    token = bearer_token(headers)
    if keys and token not in keys:
        raise AuthenticationFailed("Incorrect API key provided." if token else "You didn't provide an API key.",
                                   code="invalid_api_key")
    tenant = hashlib.sha256(token.encode()).hexdigest()[:16] if token else ""
    sub_tenant = headers.get("X-Tenant-ID", "").strip()
    return f"{tenant}:{sub_tenant}" if sub_tenant else tenant
