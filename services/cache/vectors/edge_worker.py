"""python -m services.cache.vectors.edge_worker PATH: the process that owns the Edge shard at PATH.

It loads the shard (replaying its write-ahead log), says so with a first reply [True, size],
then answers requests from stdin on stdout, one at a time, in order, until stdin closes (the
cache service exited, however it died) or a "close" request comes. One thread is all it can
use: Edge holds the GIL while it works.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from services.cache.vectors import edge_wire as wire
from services.cache.vectors.edge_shard import ShardStore

Handler = Callable[..., Any]


def handlers(store: ShardStore) -> dict[str, Handler]:
    def search(vector: bytes, scope: list[Any], floor: float, limit: int, fields: list[str],
               deadline: float) -> list[Any]:
        # Queued behind an index build, a lookup can outlive its caller: answering it is wasted work.
        if time.monotonic() > deadline:
            raise TimeoutError("the search waited past its deadline")
        return wire.pack_hits(store.search(wire.unpack_vector(vector), wire.unpack_scope(scope), floor, limit,
                                           fields))

    return {
        "size": store.size,
        "recreate": store.recreate,
        "search": search,
        "upsert": lambda points: store.upsert(wire.unpack_points(points)),
        "count": lambda scope: store.count(wire.unpack_scope(scope)),
        "delete": lambda scope: store.delete(wire.unpack_scope(scope)),
        "maintain": store.maintain,
        "close": store.close,
    }


def answer(table: dict[str, Handler], request: list[Any]) -> list[Any]:
    op, *args = request
    try:
        return [True, table[op](*args)]
    except Exception as exc:  # every failure goes back to the caller as a store error
        return [False, f"{op}: {type(exc).__name__}: {exc}"]


def serve(store: ShardStore, requests: IO[bytes], replies: IO[bytes]) -> None:
    table = handlers(store)
    while (request := wire.read_frame(requests)) is not None:
        replies.write(wire.frame(answer(table, request)))
        replies.flush()
        if request[0] == "close":
            return


def main(path: str) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the cache closes this worker itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print from any library goes to the log, not into the replies
    store = ShardStore(Path(path))
    try:
        size = store.open()
    except Exception as exc:  # a shard another process holds, or one that cannot load: say why and go
        print(f"draftgate cache: the Edge shard at {path} did not open: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        raise SystemExit(1) from None
    replies.write(wire.frame([True, size]))
    replies.flush()
    try:
        serve(store, sys.stdin.buffer, replies)
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1])
