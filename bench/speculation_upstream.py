"""The speculation benchmark's upstreams: realistic speeds, scripted by prompt marker.

`python -m bench.speculation_upstream drafter|heavyweight` serves one tier until SIGTERM.
Drafter 150 ms to first token at 200 tokens/s; heavyweight 600 ms at 60 tokens/s.
"""

from __future__ import annotations

import asyncio
import sys

from tests.fakes.scripts import Script
from tests.fakes.state import State
from tests.fakes.upstream import serve_until_signalled

DRAFTER = {"ttft_s": 0.150, "tokens_per_s": 200.0}
HEAVYWEIGHT = {"ttft_s": 0.600, "tokens_per_s": 60.0}
CONFIDENT, BLIP, UNSURE = "[confident]", "[blip]", "[unsure]"


def words(count: int, stem: str) -> list[str]:
    return [f" {stem}{i}" for i in range(count)]


def drafter_state() -> State:
    """Confident answers stay low; a blip rises above the soft threshold early then recovers
    (a speculation that gets cancelled); unsure answers ramble elevated, then turn critical."""
    state = State(Script(tokens=words(60, "c"), entropies=[0.05] * 60, **DRAFTER))
    state.add_prompt_rule(CONFIDENT, Script(tokens=words(60, "c"), entropies=[0.05] * 60, **DRAFTER))
    state.add_prompt_rule(BLIP, Script(tokens=words(150, "b"), entropies=[0.05] * 2 + [1.6] * 4 + [0.05] * 144,
                                       **DRAFTER))
    state.add_prompt_rule(UNSURE, Script(tokens=words(160, "u"), entropies=[1.6] * 110 + [2.4] * 50, **DRAFTER))
    return state


def heavyweight_state() -> State:
    return State(Script(tokens=words(40, "h"), entropies=[0.05] * 40, **HEAVYWEIGHT))


def main() -> None:
    role = sys.argv[1] if len(sys.argv) > 1 else "drafter"
    state = drafter_state() if role == "drafter" else heavyweight_state()
    asyncio.run(serve_until_signalled(state))


if __name__ == "__main__":
    main()
