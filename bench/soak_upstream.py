"""The soak's upstreams, one process per tier: `python -m bench.soak_upstream drafter|heavyweight`.

Drafter: 16 tokens, 20 ms to the first, 400 tokens/s; sure of itself unless the prompt carries
UNSURE (the first token is above the threshold: an early escalation) or BLIP (three tokens
above the speculation threshold, then sure again: a speculation started and cancelled).
Heavyweight: 24 tokens, 100 ms to the first, 100 tokens/s, so a client can leave mid-stream.
Every drafter answer says DRAFT_TEXT and every heavyweight answer HEAVY_TEXT.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import uvloop

from shared.service import tune_gc
from tests.fakes.scripts import Script
from tests.fakes.state import Seen, State
from tests.fakes.upstream import serve_until_signalled

UNSURE, BLIP = "[unsure]", "[blip]"
DRAFT_TOKENS = ["Sure"] + [f" d{i}" for i in range(1, 16)]
HEAVY_TOKENS = ["Considered"] + [f" h{i}" for i in range(1, 24)]
DRAFT_TEXT, HEAVY_TEXT = "".join(DRAFT_TOKENS), "".join(HEAVY_TOKENS)
DRAFTER = {"ttft_s": 0.020, "tokens_per_s": 400.0}
HEAVYWEIGHT = {"ttft_s": 0.100, "tokens_per_s": 100.0}


class Unrecorded(State):
    """Keeps no record of what it saw: over a soak's tens of thousands of requests the record
    would be the fake's own memory leak."""

    def record(self, model: str, body: dict[str, Any], stream: bool, status: int = 200,
               authorization: str | None = None, api: str = "openai", headers: dict[str, str] | None = None) -> Seen:
        return Seen(model=model, body=body, stream=stream, started=time.monotonic(), status=status,
                    authorization=authorization, api=api, headers=dict(headers or {}))


def drafter_state() -> State:
    sure = [0.05] * len(DRAFT_TOKENS)
    state = Unrecorded(Script(tokens=DRAFT_TOKENS, entropies=sure, **DRAFTER))
    state.add_prompt_rule(UNSURE, Script(tokens=DRAFT_TOKENS, entropies=[3.0] * len(DRAFT_TOKENS), **DRAFTER))
    state.add_prompt_rule(BLIP, Script(tokens=DRAFT_TOKENS, entropies=[0.05, 1.6, 1.6, 1.6, *sure[4:]], **DRAFTER))
    return state


def heavyweight_state() -> State:
    return Unrecorded(Script(tokens=HEAVY_TOKENS, entropies=[0.05] * len(HEAVY_TOKENS), **HEAVYWEIGHT))


def main() -> None:
    role = sys.argv[1] if len(sys.argv) > 1 else "drafter"
    tune_gc()
    uvloop.run(serve_until_signalled(drafter_state() if role == "drafter" else heavyweight_state()))


if __name__ == "__main__":
    main()
