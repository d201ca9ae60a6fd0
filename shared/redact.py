"""What a log line may say about secrets (pure text work; shared/logging.py applies it to every line).

- credentials in URLs, any scheme (`https://user:pass@host`, `redis://:pass@host`) become `***@`;
- bearer and basic credentials, and every registered secret value (client, admin and upstream keys:
  the values of the variables the config's `*_env` keys name) become their fingerprint,
  `sha256:<16 hex>`, which for a client key is also its tenant id;
- values under sensitive names (`authorization`, `api_key`, `password`, ...) anywhere in an event,
  nested dicts included, become their fingerprint too: headers logged by mistake leak nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.config import Config

# scheme://userinfo@ : userinfo runs to the last "@" before the path, a space or a quote.
_URL_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://)[^\s/'\"<>]*@")
_AUTH_SCHEMES = re.compile(r"(?i)\b(bearer|basic)(\s+)([^\s'\",;]+)")
SENSITIVE_NAMES = frozenset({"authorization", "proxy_authorization", "api_key", "apikey", "x_api_key", "password",
                             "passwd", "secret", "token", "access_token", "cookie", "set_cookie"})
# Shorter values are not secrets worth the name, and replacing them would garble unrelated text.
MIN_SECRET_LENGTH = 8


def fingerprint(secret: str) -> str:
    """How a secret may appear in a log: a prefix of its SHA-256, enough to tell keys apart."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def redact_url(url: str) -> str:
    return _URL_CREDENTIALS.sub(r"\1***@", url)


class Redactor:
    """Redacts text and structured log values; knows the process's secret values once told them."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        new = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH} - self._secrets
        if new:
            self._secrets |= new
            # Longest first, so a key that contains another is replaced whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def text(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(lambda m: fingerprint(m[0]), text)
        text = _URL_CREDENTIALS.sub(r"\1***@", text)
        return _AUTH_SCHEMES.sub(lambda m: f"{m[1]}{m[2]}{fingerprint(m[3])}", text)

    def value(self, value: Any, name: str = "") -> Any:
        """A log value with its secrets redacted; values of other types are left for the text pass."""
        if isinstance(value, str):
            return fingerprint(value) if _sensitive(name) and value else self.text(value)
        if isinstance(value, Mapping):
            return {k: self.value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v, name) for v in value]
        if _sensitive(name) and value is not None:
            return "***"
        return value


def _sensitive(name: str) -> bool:
    return name.lower().replace("-", "_") in SENSITIVE_NAMES


def config_secrets(config: Config, env: Mapping[str, str]) -> list[str]:
    """Every secret the config points at: the values of the variables its `*_env` keys name (each
    comma-separated part too) and the user and password parts of its URLs."""
    secrets = []
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            if not isinstance(value, str):
                continue
            if f.name.endswith("_env") and env.get(value):
                secrets += [env[value], *(part.strip() for part in env[value].split(","))]
            elif "://" in value and "@" in value:
                parts = urlsplit(value)
                secrets += [unquote(p) for p in (parts.username, parts.password) if p]
    return [s for s in secrets if s]


REDACTOR = Redactor()  # the process's own, told the config's secrets at start-up (shared/service.py)
