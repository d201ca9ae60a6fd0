"""The fake upstream's state: scripting rules, request validation and the record of what it saw."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any

from tests.fakes import wire
from tests.fakes.scripts import Script, confident

BASE_MODELS = ("fake-drafter", "fake-heavy")
_MAX_PLANS = 512


@dataclass
class Seen:
    """One request the fake received; times are `time.monotonic()`."""

    model: str
    body: dict[str, Any]
    stream: bool
    started: float
    ended: float | None = None
    tokens_sent: int = 0
    closed_early: bool = False
    completed: bool = False
    status: int = 200
    authorization: str | None = None  # the Authorization header the client sent
    api: str = "openai"  # the wire the request came in on: openai | anthropic | gemini
    headers: dict[str, str] = dataclasses.field(default_factory=dict)  # native wires: the request's headers


class BadRequest(Exception):
    def __init__(self, param: str | None, message: str) -> None:
        super().__init__(message)
        self.param = param


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def prompt_words(messages: list[Any]) -> int:
    return sum(len(_text(m.get("content")).split()) for m in messages if isinstance(m, dict))


def parse_shape(body: Any) -> wire.Shape:
    """Validate the parts of a request the fake relies on, with the real API's 400s."""
    if not isinstance(body, dict):
        raise BadRequest(None, "The request body must be a JSON object.")
    model, messages, stream = body.get("model"), body.get("messages"), body.get("stream") is True
    if not isinstance(model, str) or not model:
        raise BadRequest("model", "You must provide a model parameter.")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages", "'messages' must be a non-empty array.")
    top_k = body.get("top_logprobs") or 0
    if not isinstance(top_k, int) or not 0 <= top_k <= 20:
        raise BadRequest("top_logprobs", "'top_logprobs' must be an integer between 0 and 20.")
    if top_k and body.get("logprobs") is not True:
        raise BadRequest("top_logprobs", "'logprobs' must be set to true when 'top_logprobs' is used.")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise BadRequest("stream_options", "'stream_options' is only allowed when 'stream' is enabled.")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise BadRequest("max_tokens", "'max_tokens' must be a positive integer.")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return wire.Shape(model, body.get("logprobs") is True, top_k, include_usage, max_tokens)


class State:
    """Scripts, rules and the record of requests, shared between the server loop and the test thread."""

    def __init__(self, default: Script | None = None, tick_s: float = 0.0) -> None:
        self.default = default or confident("Hello from the fake upstream.")
        # Tokens due within tick_s of a write join it: fewer writes per second for throughput benchmarks.
        self.tick_s = tick_s
        self._lock = threading.Lock()
        self._prompt_rules: list[tuple[str, Script]] = []
        self._model_rules: dict[str, Script] = {}
        self._seen: list[Seen] = []
        self._plans: dict[tuple[int, wire.Shape], tuple[Script, wire.Plan]] = {}
        self._ids = itertools.count(1)

    def add_prompt_rule(self, match: str, script: Script) -> None:
        with self._lock:
            self._prompt_rules.append((match, script))

    def add_model_rule(self, model: str, script: Script) -> None:
        with self._lock:
            self._model_rules[model] = script

    def pick(self, model: str, messages: list[Any]) -> Script:
        """Latest matching prompt rule, else the model rule, else the default."""
        prompt = last_user_text(messages)
        with self._lock:
            for match, script in reversed(self._prompt_rules):
                if match in prompt:
                    return script
            return self._model_rules.get(model, self.default)

    def record(self, model: str, body: dict[str, Any], stream: bool, status: int = 200,
               authorization: str | None = None, api: str = "openai", headers: dict[str, str] | None = None) -> Seen:
        seen = Seen(model=model, body=body, stream=stream, started=time.monotonic(), status=status,
                    authorization=authorization, api=api, headers=dict(headers or {}))
        with self._lock:
            self._seen.append(seen)
        return seen

    def finish(self, seen: Seen, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(seen, name, value)
            seen.ended = time.monotonic()

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return [dataclasses.replace(s) for s in self._seen]

    def models(self) -> list[str]:
        with self._lock:
            names = [*BASE_MODELS, *self._model_rules, *(s.model for s in self._seen)]
        return list(dict.fromkeys(names))

    def next_id(self) -> str:
        return f"chatcmpl-fake-{next(self._ids)}"

    def plan(self, script: Script, shape: wire.Shape) -> wire.Plan:
        """Rendered chunks, cached per script object and shape (the script is kept so its id stays unique)."""
        key = (id(script), shape)
        cached = self._plans.get(key)
        if cached is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            cached = self._plans[key] = (script, wire.render(script, shape))
        return cached[1]

    def reset(self) -> None:
        with self._lock:
            self._prompt_rules.clear()
            self._model_rules.clear()
            self._seen.clear()
            self._plans.clear()
