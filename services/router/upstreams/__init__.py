"""Upstream providers and the transport that calls them (issue #12): one module per provider.

`provider_for(name)` is the provider a deployment's `provider:` key names; PROVIDERS lists them.
"""

from __future__ import annotations

from services.router.upstreams.anthropic import PROVIDER as ANTHROPIC
from services.router.upstreams.base import Provider
from services.router.upstreams.gemini import PROVIDER as GEMINI
from services.router.upstreams.openai import PROVIDER as OPENAI

PROVIDERS: dict[str, Provider] = {provider.name: provider for provider in (OPENAI, ANTHROPIC, GEMINI)}


def provider_for(name: str) -> Provider:
    """The provider called `name`; config validation has made sure there is one."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ValueError(f"unknown upstream provider {name!r}; known: {', '.join(sorted(PROVIDERS))}") from None
