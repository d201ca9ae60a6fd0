"""Pure: normalise a chat request and derive its cache keys.

partition: everything that shapes the answer except the last user message (system prompt,
earlier turns, tier, sampling parameters, tools, response_format) plus the tenant.
exact: the whole normalised request plus the tenant, with the last user message in its key form.
semantic_text: what gets embedded, stored with the entry and verified against a new request.
Both come from services/cache/normalise.py: the semantic form keeps case and every literal (the
verifier reads them); the key form folds plain words' case on top, so "What's the capital of Japan?"
and "what is the capital of japan" share an exact entry while "userId" and "userid", "4411" and
"4412" or two different quoted strings never do.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from services.cache.normalise import key_form, semantic_form

__all__ = ["KEY_VERSION", "RequestKeys", "is_partition_id", "request_keys", "semantic_form", "tenant_hash"]

# 2: the last user message enters the exact key in its key form (case, contractions, punctuation).
KEY_VERSION = 2
EXACT_PREFIX = "draftgate:cache:exact:"

# Fields that change how an answer is delivered or billed, never what it says.
DELIVERY_FIELDS = frozenset({
    "model", "stream", "stream_options", "user", "metadata", "store", "safety_identifier",
    "prompt_cache_key", "service_tier", "messages",
})
# Parameters whose absence means the default: the absent and explicit forms share a key.
DEFAULTS: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0, "n": 1, "frequency_penalty": 0.0,
                            "presence_penalty": 0.0}
DEFAULT_TIER = "auto"


@dataclass(frozen=True, slots=True)
class RequestKeys:
    tenant: str  # a short hash of the tenant id, safe inside a Redis key
    partition: str
    exact: str
    semantic_text: str | None  # None: this request has no semantic tier

    @property
    def redis_key(self) -> str:
        return f"{EXACT_PREFIX}{self.tenant}:{self.partition}:{self.exact}"


def request_keys(body: dict[str, Any], tenant: str) -> RequestKeys:
    """The keys of one chat request; body must already hold a list of message objects."""
    messages = [_message(m) for m in body["messages"]]
    params = _params(body)
    tier = _tier(body.get("model"))
    tenant_tag = tenant_hash(tenant)
    last = _last_user_index(messages)
    context = list(messages)
    semantic_text = None
    if last is not None:
        semantic_text = semantic_form(messages[last]["content"])
        context[last] = {**messages[last], "content": None}
        if semantic_text is not None:
            messages[last] = {**messages[last], "content": key_form(semantic_text)}
    partition = _digest({"tenant": tenant_tag, "tier": tier, "params": params, "messages": context})
    exact = _digest({"tenant": tenant_tag, "tier": tier, "params": params, "messages": messages})
    return RequestKeys(tenant_tag, partition, exact, semantic_text)


def tenant_hash(tenant: str) -> str:
    return hashlib.sha256(tenant.encode()).hexdigest()[:16]


def is_partition_id(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _message(message: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in message.items() if v is not None}
    out["role"] = str(out.get("role", "")).lower()
    if "content" in out:
        out["content"] = _content(out["content"])
    return out


def _content(content: Any) -> Any:
    """Strings are NFC-normalised and stripped; a list of only text parts becomes one string."""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        content = "\n".join(str(p.get("text", "")) for p in content)
    if isinstance(content, str):
        return unicodedata.normalize("NFC", content).strip()
    return content


def _params(body: dict[str, Any]) -> dict[str, Any]:
    params = {}
    for key, value in body.items():
        if key in DELIVERY_FIELDS or value is None:
            continue
        if key in DEFAULTS and _number(value) == DEFAULTS[key]:
            continue
        params[key] = _number(value) if key in DEFAULTS else value
    return params


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return float(value)


def _tier(model: Any) -> str:
    text = str(model or "").strip().lower()
    return text or DEFAULT_TIER


def _last_user_index(messages: list[dict[str, Any]]) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index]["role"] == "user":
            return index
    return None


def _digest(value: Any) -> str:
    canonical = json.dumps([KEY_VERSION, value], sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
