"""The one rate-limit arithmetic (GCRA buckets in Redis), shared by every script that limits something.

gcra.lua holds Lua functions, not a script: `with_gcra(path)` prepends them to a script's own body,
so the router's per-deployment limits (services/router/upstreams/ratelimit.lua) and the gateway's
per-key limits (services/gateway/limits.lua) drain and refuse the same way, each still one script
(one EVALSHA, on Redis 6.2 as on 7: no Redis 7 functions needed).
"""

from __future__ import annotations

from pathlib import Path

LIBRARY = Path(__file__).with_name("gcra.lua").read_text()
WINDOW_S = 60.0  # every limit is per minute: a bucket drains at limit / WINDOW_S


def with_gcra(script: Path) -> str:
    """The script at `script`, with the GCRA functions (gcra_now, gcra_levels, gcra_wait,
    gcra_empty_in, gcra_store, gcra_retry_ms) defined before it."""
    return f"{LIBRARY}\n{script.read_text()}"
