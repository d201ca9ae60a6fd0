"""Which drafted chunks a progressive stream may show yet. Pure: tests feed it chunks.

A chunk goes out once the draft is past the early-exit region, the latest token is calm (not
above the speculation threshold, so a window turning uncertain still holds what it has not shown),
and at least `holdback_tokens` judged tokens follow it; the shown text must end at a word boundary
(seam.py), known only once the next chunk is in. Finish, usage and tool-call chunks never go out
early: what ends an answer, and a tool call's JSON, are not shown piecemeal before the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.router.assemble import is_usage_chunk
from services.router.seam import delta_text, word_boundary


def _final(chunk: dict[str, Any]) -> bool:
    if is_usage_chunk(chunk):
        return True
    for choice in chunk.get("choices") or ():
        if choice.get("finish_reason") or (choice.get("delta") or {}).get("tool_calls"):
            return True
    return False


@dataclass
class Release:
    early_exit_tokens: int
    holdback_tokens: int
    chunks: list[dict[str, Any]] = field(default_factory=list)
    released: int = 0  # chunks[:released] were shown
    shown_tokens: int = 0
    _ends: list[int] = field(default_factory=list)  # tokens drafted up to and including each chunk
    _texts: list[str] = field(default_factory=list)
    _final: list[bool] = field(default_factory=list)
    _shown: list[str] = field(default_factory=list)

    def add(self, chunk: dict[str, Any], tokens: int) -> None:
        self._ends.append((self._ends[-1] if self._ends else 0) + tokens)
        self._texts.append(delta_text(chunk))
        self._final.append(_final(chunk))
        self.chunks.append(chunk)

    @property
    def shown_text(self) -> str:
        return "".join(self._shown)

    @property
    def next_text(self) -> str:
        """The drafted text right after what was shown: how the drafter meant to go on."""
        return next((text for text in self._texts[self.released:] if text), "")

    def ready(self, judged: int, calm: bool) -> list[dict[str, Any]]:
        """The chunks that may go out now, given `judged` tokens judged so far; marks them shown."""
        if not calm or judged < max(self.early_exit_tokens, 1):
            return []
        limit = judged - self.holdback_tokens
        last_char = next((text[-1] for text in reversed(self._shown) if text), "")
        upto = None
        for i in range(self.released, len(self.chunks) - 1):  # the newest: what follows it is unknown
            if self._final[i] or self._ends[i] > limit:
                break
            last_char = self._texts[i][-1:] or last_char
            if word_boundary(last_char, self._texts[i + 1]):
                upto = i + 1
        return [] if upto is None else self._show(upto)

    def rest(self) -> list[dict[str, Any]]:
        """Everything not shown yet (the draft was accepted whole)."""
        return self._show(len(self.chunks))

    def _show(self, upto: int) -> list[dict[str, Any]]:
        out = self.chunks[self.released:upto]
        self._shown.extend(self._texts[self.released:upto])
        self.released = upto
        self.shown_tokens = self._ends[upto - 1] if upto else 0
        return out
