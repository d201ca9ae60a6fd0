"""The progressive-streaming benchmark's upstreams: 20 ms per token, scripted by prompt marker.

`python -m bench.progressive_upstream drafter|heavyweight` serves one tier until SIGTERM.

Drafter: first token after 50 ms, then one every 20 ms. "[len10]", "[len40]" and "[len200]" are
confident answers of that many tokens; "[turns]" is confident for 20 tokens, elevated (above the
speculation threshold, under the escalation threshold) for 10, then critical until the window mean
crosses the threshold: it turns uncertain after the early-exit region, once a prefix was shown.

Heavyweight: first token after 300 ms, then one every 20 ms. Its answer is ANSWER_TOKENS long; asked to
continue a shown prefix (an assistant message in the request), it writes the rest of that answer, as a
model continuing a text does, instead of a whole new one: a serial escalation pays for the whole answer,
a continuation for the part the client has not seen yet.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from tests.fakes.scripts import Script
from tests.fakes.state import State
from tests.fakes.upstream import serve_until_signalled

TOKEN_S = 0.020
DRAFTER = {"ttft_s": 0.050, "tokens_per_s": 1 / TOKEN_S}
HEAVYWEIGHT = {"ttft_s": 0.300, "tokens_per_s": 1 / TOKEN_S}
CONFIDENT_BITS, ELEVATED_BITS, CRITICAL_BITS = 0.05, 1.6, 2.6
LENGTHS = (10, 40, 200)
TURNS = "[turns]"
TURN_CONFIDENT, TURN_ELEVATED, TURN_CRITICAL = 20, 10, 30
ANSWER_TOKENS = 60
MIN_CONTINUATION = 10


def marker(length: int) -> str:
    """The prompt marker that asks the drafter for a confident answer of `length` tokens."""
    return f"[len{length}]"


def drafted(length: int, stem: str = "d") -> list[str]:
    """Fake tokens, each with a leading space, so every token starts a word."""
    return [f" {stem}{i}" for i in range(length)]


def turning_entropies() -> list[float]:
    """Confident, then elevated (a speculation starts, releasing pauses), then critical: with a window
    of 10 at 2.0 bits, the mean crosses the threshold at the 5th critical token (token 35)."""
    return [CONFIDENT_BITS] * TURN_CONFIDENT + [ELEVATED_BITS] * TURN_ELEVATED + [CRITICAL_BITS] * TURN_CRITICAL


def drafter_state() -> State:
    state = State(Script(tokens=drafted(LENGTHS[1]), **DRAFTER))
    for length in LENGTHS:
        state.add_prompt_rule(marker(length), Script(tokens=drafted(length), **DRAFTER))
    entropies = turning_entropies()
    state.add_prompt_rule(TURNS, Script(tokens=drafted(len(entropies)), entropies=entropies, **DRAFTER))
    return state


def shown_words(messages: list[Any]) -> int:
    """Words of the assistant turns in a request: the prefix a continuation request carries."""
    return sum(len(message["content"].split()) for message in messages
               if isinstance(message, dict) and message.get("role") == "assistant"
               and isinstance(message.get("content"), str))


def continuation_tokens(shown: int) -> list[str]:
    """The rest of the heavyweight's answer after `shown` words (numbered on, so the seam is legible)."""
    start = min(shown, ANSWER_TOKENS - MIN_CONTINUATION)
    return [f" h{i}" for i in range(start, ANSWER_TOKENS)]


class HeavyweightState(State):
    """The heavyweight: a whole answer, or the rest of it after a shown prefix."""

    def __init__(self) -> None:
        super().__init__(Script(tokens=continuation_tokens(0), **HEAVYWEIGHT))
        # One Script per length: the fake caches a script's rendered chunks by the object.
        self._by_shown: dict[int, Script] = {0: self.default}

    def pick(self, model: str, messages: list[Any]) -> Script:
        shown = shown_words(messages)
        if shown not in self._by_shown:
            self._by_shown[shown] = Script(tokens=continuation_tokens(shown), **HEAVYWEIGHT)
        return self._by_shown[shown]


def main() -> None:
    role = sys.argv[1] if len(sys.argv) > 1 else "drafter"
    state = drafter_state() if role == "drafter" else HeavyweightState()
    asyncio.run(serve_until_signalled(state))


if __name__ == "__main__":
    main()
