"""What a call costs: USD per million input and output tokens. Pure.

Published list prices for models draftgate defaults to (OpenAI, as of 2025: gpt-4.1-nano $0.10 /
$0.40, gpt-4.1 $2.00 / $8.00 per million tokens); any other model is priced in the config
(`<tier>.input_usd_per_mtok`, `<tier>.output_usd_per_mtok`). The local SmolLM2 tiers of `make run`
are priced as if they were the nano / 4.1 pair, so the savings shown are those the same routing
would make on OpenAI.
"""

from __future__ import annotations

from dataclasses import dataclass

MTOK = 1_000_000


@dataclass(frozen=True)
class Price:
    input_usd_per_mtok: float
    output_usd_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for one call that read `prompt_tokens` and wrote `completion_tokens`."""
        return (prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok) / MTOK


PUBLISHED: dict[str, Price] = {
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
}
# The local tiers' stand-ins: drafter as gpt-4.1-nano, heavyweight as gpt-4.1.
LOCAL_AS = {"drafter": "gpt-4.1-nano", "heavyweight": "gpt-4.1"}


def published(model: str | None) -> Price | None:
    return PUBLISHED.get(model or "")
