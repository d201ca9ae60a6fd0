"""What a draft's token trace says about it: the per-draft signals the routing policies, the
calibration sweep and its baselines all read. Pure: one implementation for the live router and
the offline replay.

A trace is the drafted tokens, each with the chosen token's log-prob and its top-k alternatives'
(natural log, most likely first), as a chunk's `logprobs.content` carries them and as
`calibrate collect` records them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from services.router.entropy import token_entropy_bits

HEAD_TOKENS = 5  # the draft's opening, where a model that does not know shows it first
UNCERTAIN_BITS = 1.0


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


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def draft_signals(tokens: Sequence[TokenTrace]) -> dict[str, float]:
    """Per-draft signals; for each, higher means more likely wrong."""
    bits = entropies(tokens)
    neglogprobs = [-t.logprob for t in tokens if t.logprob is not None and math.isfinite(t.logprob)]
    return {
        "max_entropy": max(bits, default=0.0),
        "mean_entropy": sum(bits) / len(bits) if bits else 0.0,
        "head_mean_entropy": sum(bits[:HEAD_TOKENS]) / len(bits[:HEAD_TOKENS]) if bits else 0.0,
        "frac_uncertain": sum(b > UNCERTAIN_BITS for b in bits) / len(bits) if bits else 0.0,
        "max_neglogprob": max(neglogprobs, default=0.0),  # the minimum log-prob, sign flipped
        "q80_neglogprob": quantile(neglogprobs, 0.8),
        "mean_neglogprob": sum(neglogprobs) / len(neglogprobs) if neglogprobs else 0.0,
        "log_length": math.log1p(len(tokens)),
    }


_CODE = re.compile(r"```|\b(def|function|class|return|python|javascript|code|implement|program)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d")
_OPEN = re.compile(r"\b(write|describe|imagine|story|poem|haiku|creative|opinion|why|explain|ideas?)\b",
                   re.IGNORECASE)
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
    }
