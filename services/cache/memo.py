"""Pure: the vectors this cache process computed lately, by text, so a request is embedded once.

A lookup that misses embeds the request's text; when the drafted answer comes back to be stored
(a few seconds later, through the write stream), the writer takes the vector from here instead
of asking the embedder again. Bounded both ways: at most `capacity` texts (least recently used
go first) and `ttl_s` seconds each. Vectors are kept as float32 (1.5 kB for MiniLM's 384).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

CAPACITY = 4096
TTL_S = 120.0


@dataclass
class VectorMemo:
    capacity: int = CAPACITY
    ttl_s: float = TTL_S
    clock: Callable[[], float] = time.monotonic
    _entries: OrderedDict[str, tuple[float, np.ndarray]] = field(default_factory=OrderedDict)

    def get(self, text: str) -> list[float] | None:
        entry = self._entries.get(text)
        if entry is None:
            return None
        expires, vector = entry
        if expires <= self.clock():
            del self._entries[text]
            return None
        self._entries.move_to_end(text)
        return vector.tolist()

    def put(self, text: str, vector: list[float]) -> None:
        self._entries[text] = (self.clock() + self.ttl_s, np.asarray(vector, dtype=np.float32))
        self._entries.move_to_end(text)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
