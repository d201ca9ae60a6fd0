"""What a draft's token trace says about it: the per-draft signals the routing policies, the
calibration sweep and its baselines all read. Pure: one implementation for the live router and
the offline replay.

A trace is the drafted tokens, each with the chosen token's log-prob and its top-k alternatives'
(natural log, most likely first), as a chunk's `logprobs.content` carries them and as
`calibrate collect` records them.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from services.router.entropy import token_entropy_bits

HEAD_TOKENS = 5  # the draft's opening, where a model that does not know shows it first
UNCERTAIN_BITS = 1.0
WINDOW_TOKENS = 10  # max_window_mean's window: the router's default, fixed so a signal means one thing


@dataclass(frozen=True, slots=True)
class TokenTrace:
    token: str
    logprob: float | None  # the chosen token's; None when the server sent none usable
    top_logprobs: tuple[float, ...]  # the k most likely alternatives, most likely first

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "logprob": self.logprob, "top_logprobs": list(self.top_logprobs)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenTrace:
        return cls(str(data["token"]), data.get("logprob"), tuple(data.get("top_logprobs") or ()))


def tokens_of(chunk: dict[str, Any], top_k: int) -> list[TokenTrace]:
    """The traced tokens of one streamed chunk (first choice), alternatives cut to the k most likely
    (some servers add the sampled token as a (k+1)-th); null log-probs (-inf) carry no mass."""
    choices = chunk.get("choices") or ()
    logprobs = (choices[0].get("logprobs") or {}) if choices else {}
    out = []
    for entry in logprobs.get("content") or ():
        alternatives = sorted((lp for alt in entry.get("top_logprobs") or () if (lp := alt.get("logprob")) is not None),
                              reverse=True)[:top_k]
        chosen = entry.get("logprob")
        out.append(TokenTrace(str(entry.get("token", "")), None if chosen is None else float(chosen),
                              tuple(float(lp) for lp in alternatives)))
    return out


def entropies(tokens: Iterable[TokenTrace]) -> list[float]:
    """Each token's entropy in bits, skipping tokens with no usable alternatives (as the router does)."""
    return [bits for token in tokens if (bits := token_entropy_bits(token.top_logprobs)) is not None]


def with_top_k(tokens: Iterable[TokenTrace], k: int) -> list[TokenTrace]:
    """The tokens as a k-alternative trace: a file recorded with top-20 replayed as the router, asking
    for k, sees it. Entropy signals depend on k, so a policy is fitted and run at one k."""
    return [TokenTrace(t.token, t.logprob, t.top_logprobs[:k]) for t in tokens]


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), 0.0 for no values."""
    return _sorted_quantile(sorted(values), q)


def _sorted_quantile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class TraceStats:
    """A draft's signals kept up to date token by token, so the router can ask for them after every
    chunk of a streaming draft at a constant cost (recomputing them from the whole trace each time
    would cost the square of the draft's length). draft_signals is this, fed a whole trace."""

    def __init__(self) -> None:
        self.tokens = 0
        self._bits: list[float] = []  # only the first HEAD_TOKENS are kept; counts and sums cover all
        self._bits_count = 0
        self._bits_sum = 0.0
        self._bits_max = 0.0
        self._uncertain = 0
        self._window: deque[float] = deque(maxlen=WINDOW_TOKENS)
        self._max_window_mean: float | None = None
        self._neglogprobs: list[float] = []  # sorted, for the quantiles
        self._neglogprob_sum = 0.0
        self._neglogprob_squares = 0.0
        self._head_neglogprobs: list[float] = []
        self._bits_squares = 0.0
        self._first_bits: float | None = None
        self._distinct: set[str] = set()
        self._newlines = 0
        self._digits = False

    def add(self, token: TokenTrace) -> None:
        self.tokens += 1
        self._distinct.add(token.token)
        self._newlines += token.token.count("\n")
        self._digits = self._digits or _NUMBER.search(token.token) is not None
        if token.logprob is not None and math.isfinite(token.logprob):
            value = -token.logprob
            bisect.insort(self._neglogprobs, value)
            self._neglogprob_sum += value
            self._neglogprob_squares += value * value
            if self.tokens <= HEAD_TOKENS:
                self._head_neglogprobs.append(value)
        bits = token_entropy_bits(token.top_logprobs)
        if bits is None:
            return
        self._bits_count += 1
        self._bits_sum += bits
        self._bits_squares += bits * bits
        if self._first_bits is None:
            self._first_bits = bits
        self._bits_max = max(self._bits_max, bits)
        self._uncertain += bits > UNCERTAIN_BITS
        if len(self._bits) < HEAD_TOKENS:
            self._bits.append(bits)
        self._window.append(bits)
        if len(self._window) == WINDOW_TOKENS:
            mean = sum(self._window) / WINDOW_TOKENS
            self._max_window_mean = mean if self._max_window_mean is None else max(self._max_window_mean, mean)

    def extend(self, tokens: Iterable[TokenTrace]) -> TraceStats:
        for token in tokens:
            self.add(token)
        return self

    def signals(self) -> dict[str, float]:
        """Per-draft signals; for each, higher means more likely wrong."""
        count, neglogprobs = self._bits_count, self._neglogprobs
        mean_bits = self._bits_sum / count if count else 0.0
        return {
            "max_entropy": self._bits_max,
            "mean_entropy": mean_bits,
            "head_mean_entropy": sum(self._bits) / len(self._bits) if self._bits else 0.0,
            "frac_uncertain": self._uncertain / count if count else 0.0,
            # The router's draft-entropy metric at a fixed window: the largest full-window mean, or the
            # mean of a draft shorter than the window.
            "max_window_mean": self._max_window_mean if self._max_window_mean is not None else mean_bits,
            "max_neglogprob": neglogprobs[-1] if neglogprobs else 0.0,  # the minimum log-prob, sign flipped
            "q80_neglogprob": _sorted_quantile(neglogprobs, 0.8),
            "mean_neglogprob": self._neglogprob_sum / len(neglogprobs) if neglogprobs else 0.0,
            "head_mean_neglogprob": (sum(self._head_neglogprobs) / len(self._head_neglogprobs)
                                     if self._head_neglogprobs else 0.0),
            "log_length": math.log1p(self.tokens),
            # Policy version 2: the spread of the draft's confidence, its tail, its first token, its shape.
            "std_entropy": _std(self._bits_sum, self._bits_squares, count),
            "q95_neglogprob": _sorted_quantile(neglogprobs, 0.95),
            "std_neglogprob": _std(self._neglogprob_sum, self._neglogprob_squares, len(neglogprobs)),
            "log_sum_neglogprob": math.log1p(self._neglogprob_sum),  # the draft's surprisal, in nats
            "first_entropy": self._first_bits or 0.0,
            "first_neglogprob": self._head_neglogprobs[0] if self._head_neglogprobs else 0.0,
            "log_uncertain": math.log1p(self._uncertain),  # how many tokens above 1 bit
            "repeat_share": 1.0 - len(self._distinct) / self.tokens if self.tokens else 0.0,  # tokens seen before
            "draft_log_lines": math.log1p(self._newlines),
            "draft_digits": float(self._digits),
        }


def _std(total: float, squares: float, count: int) -> float:
    """Population standard deviation from a running sum and sum of squares."""
    return math.sqrt(max(squares / count - (total / count) ** 2, 0.0)) if count else 0.0


def draft_signals(tokens: Iterable[TokenTrace]) -> dict[str, float]:
    """Per-draft signals; for each, higher means more likely wrong."""
    return TraceStats().extend(tokens).signals()


DRAFT_SIGNALS: tuple[str, ...] = tuple(TraceStats().signals())


_CODE = re.compile(r"```|\b(def|function|class|return|python|javascript|code|implement|program)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d")
_OPEN = re.compile(r"\b(write|describe|imagine|story|poem|haiku|creative|opinion|why|explain|ideas?)\b",
                   re.IGNORECASE)
_NUMBERS = re.compile(r"\d+")
_ASKS_NUMBER = re.compile(r"\b(how many|how much|what is \d|calculate|compute)\b", re.IGNORECASE)
_ASKS_LIST = re.compile(r"\b(list|name (two|three|four|five)|\d+ (items|ideas|things|ways))\b", re.IGNORECASE)
_CONSTRAINED = re.compile(r"\b(only|exactly|just)\b", re.IGNORECASE)
_STEPS = re.compile(r"\b(how many|how much|total|each|per|left|remain|times|sum|average|if)\b", re.IGNORECASE)


def prompt_text(messages: Sequence[dict[str, Any]]) -> str:
    """The text of the last user message (content parts joined)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(part.get("text", "") for part in content or () if isinstance(part, dict))
    return ""


def prompt_signals(messages: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Properties of the question that predict a small model's failures apart from its confidence."""
    text = prompt_text(messages)
    return {
        "prompt_log_chars": math.log1p(len(text)),
        "prompt_digits": float(len(_NUMBER.findall(text)) > 0),
        "prompt_code": float(_CODE.search(text) is not None),
        "prompt_open": float(_OPEN.search(text) is not None),
        "prompt_steps": float(len(_STEPS.findall(text))),
        # Policy version 2: how long in words, how many numbers and how long the longest (7 times 8 against
        # 67 times 89), and what it asks for: a number, a list, a constrained form.
        "prompt_log_words": math.log1p(len(text.split())),
        "prompt_numbers": float(len(numbers := _NUMBERS.findall(text))),
        "prompt_max_digits": float(max((len(n) for n in numbers), default=0)),
        "prompt_asks_number": float(_ASKS_NUMBER.search(text) is not None),
        "prompt_asks_list": float(_ASKS_LIST.search(text) is not None),
        "prompt_constrained": float(_CONSTRAINED.search(text) is not None),
    }


PROMPT_SIGNALS: tuple[str, ...] = tuple(prompt_signals([]))
