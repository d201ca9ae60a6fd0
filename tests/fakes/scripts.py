"""Pure scripting for the fake upstream: what a scripted answer says and how sure it sounds.

The router decides from the entropy of `top_logprobs`, so each token carries a target entropy in
bits and `top_logprobs_for` turns it into log-probabilities whose renormalised entropy is exactly that.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.garbage import MODES

DEFAULT_BITS = 0.05
# Distribution size behind the chosen token's logprob when the request asks for no alternatives.
DEFAULT_K = 5
SENTINEL_LOGPROB = -9999.0
_MIN_P = 1e-30
_TOKEN_RE = re.compile(r"\s*\S+|\s+")


# A scripted tool call's arguments are streamed in this many pieces (fewer when the JSON is shorter).
ARGUMENT_PIECES = 3
MIN_PIECE = 8  # characters: shorter arguments go whole


@dataclass(frozen=True)
class ToolCall:
    """A function call the scripted answer makes after its text, as every provider's wire spells it."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None  # None: each wire makes up one in its own style (call_..., toolu_...)

    @property
    def json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"))

    def pieces(self) -> list[str]:
        """The arguments' JSON in up to ARGUMENT_PIECES parts, streamed one per paced unit."""
        text = self.json
        size = max(MIN_PIECE, -(-len(text) // ARGUMENT_PIECES))
        return [text[i:i + size] for i in range(0, len(text), size)]


@dataclass(frozen=True)
class Script:
    """One scripted answer: its tokens, how sure each one is, and how fast and how it is delivered."""

    tokens: list[str]
    entropies: list[float] | None = None
    ttft_s: float = 0.0
    tokens_per_s: float | None = None
    status: int = 200
    logprobs: bool = True
    sentinel: bool = False
    finish_reason: str = "stop"
    garbage: str | None = None  # a mode of tests.fakes.garbage: answer with that kind of malformed reply
    garbage_after: int = 2  # good tokens streamed before the garbage (or before stream_error)
    tool_calls: tuple[ToolCall, ...] = ()  # function calls after the text tokens
    retry_after_s: float | None = None  # with status: the wait the error answer asks for
    stream_error: int | None = None  # a 200 stream that carries this status's error after garbage_after tokens
    # Set by the test: a streamed answer sends nothing (not even its headers) until the event is set.
    hold: threading.Event | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.garbage is not None and self.garbage not in MODES:
            raise ValueError(f"unknown garbage mode {self.garbage!r}; known: {sorted(MODES)}")
        if self.stream_error is not None and (self.stream_error < 400 or self.garbage is not None):
            raise ValueError("stream_error is an error status (>= 400) and excludes garbage")
        if self.entropies is not None and len(self.entropies) != len(self.tokens):
            raise ValueError(f"{len(self.entropies)} entropies for {len(self.tokens)} tokens")
        if self.tokens_per_s is not None and self.tokens_per_s <= 0:
            raise ValueError("tokens_per_s must be positive or None")

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def bits(self) -> list[float]:
        return list(self.entropies) if self.entropies is not None else [DEFAULT_BITS] * len(self.tokens)

    @property
    def finish(self) -> str:
        """The OpenAI finish_reason of the whole answer: a tool-calling answer ends in `tool_calls`."""
        return "tool_calls" if self.tool_calls and self.finish_reason == "stop" else self.finish_reason


def planned(script: Script, max_tokens: int | None) -> tuple[list[str], str, tuple[ToolCall, ...]]:
    """The text tokens a request gets, its OpenAI finish_reason and its tool calls: a max_tokens below
    the script's length cuts the text (finish `length`) and drops the tool calls."""
    if max_tokens is not None and max_tokens < len(script.tokens):
        return script.tokens[:max_tokens], "length", ()
    return list(script.tokens), script.finish, script.tool_calls


@dataclass(frozen=True)
class Frames:
    """A streamed answer as bytes, for the native wires: `head` goes out with the first unit, each
    unit (a text token or a piece of a tool call) on the script's schedule, `tail` after the last."""

    head: bytes
    units: list[bytes]
    tail: bytes


def split_tokens(text: str) -> list[str]:
    """Word-ish tokens that keep their leading space ("Hello", " world"); joining them gives `text` back."""
    return _TOKEN_RE.findall(text)


def confident(text: str, **kw: Any) -> Script:
    return Script(tokens=split_tokens(text), **kw)


def uncertain(text: str, bits: float = 3.0, **kw: Any) -> Script:
    tokens = split_tokens(text)
    return Script(tokens=tokens, entropies=[bits] * len(tokens), **kw)


def entropy_bits(logprobs: list[float]) -> float:
    """Shannon entropy in bits of the renormalised distribution behind natural-log probabilities."""
    probs = [math.exp(lp) for lp in logprobs]
    total = sum(probs)
    return -sum(p / total * math.log2(p / total) for p in probs if p > 0)


def _family_bits(p1: float, k: int) -> float:
    """Entropy of (p1, rest, ..., rest) with k-1 equal rests; decreasing in p1 over [1/k, 1]."""
    rest = (1.0 - p1) / (k - 1)
    bits = -p1 * math.log2(p1) if p1 > 0 else 0.0
    if rest > 0:
        bits -= (k - 1) * rest * math.log2(rest)
    return bits


def top_logprobs_for(bits: float, k: int) -> list[float]:
    """k descending natural-log probabilities whose distribution has entropy `bits` (clamped to [0, log2 k])."""
    if k <= 0:
        return []
    if k == 1:
        return [0.0]
    target = min(max(bits, 0.0), math.log2(k))
    lo, hi = 1.0 / k, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if _family_bits(mid, k) > target:
            lo = mid
        else:
            hi = mid
    p1 = (lo + hi) / 2
    rest = max((1.0 - p1) / (k - 1), _MIN_P)
    return [math.log(p1)] + [math.log(rest)] * (k - 1)


def sentinel_count(k: int) -> int:
    """How many trailing top_logprobs a sentinel-padding server replaces (at least one when k >= 2)."""
    return max(1, k // 4) if k >= 2 else 0


def token_alternatives(token: str, bits: float, k: int, sentinel: bool) -> tuple[float, list[tuple[str, float]]]:
    """The chosen token's logprob and its k (token, logprob) alternatives, the chosen token first.

    With `sentinel` the head carries the target distribution and the tail is -9999.0 padding, so the
    head's entropy is capped at log2(k - sentinel_count(k)).
    """
    pads = sentinel_count(k) if sentinel else 0
    head = top_logprobs_for(bits, k - pads) if k else top_logprobs_for(bits, DEFAULT_K)[:1]
    names = [token] + [f"<alt{i}>" for i in range(1, len(head))]
    alternatives = list(zip(names, head, strict=True)) if k else []
    alternatives += [(f"<pad{i}>", SENTINEL_LOGPROB) for i in range(pads)]
    return head[0], alternatives


def tokens_due(sent: int, n: int, gap: float, elapsed: float) -> int:
    """How many of n tokens are due `elapsed` seconds after the first, one per `gap` (0: all at once).

    Never fewer than sent + 1, since it is asked right after waiting for the next token."""
    due = n if not gap else min(n, int(elapsed / gap) + 1)
    return min(n, max(due, sent + 1))
