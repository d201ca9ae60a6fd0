"""The one way every service opens Redis: pooled, with timeouts and redis-py's own retries.

A pooled connection that a restarted (or CLIENT KILLed) server closed fails on its next use;
redis-py then reconnects and re-sends the command (or the whole pipeline) with exponential
backoff instead of surfacing the error. Re-sending is safe for what the services write:
replies are deduplicated by sequence number, XACK, EXPIRE and SET are idempotent, and a
cache write stored twice is stored once. Only a failure that outlasts the retries (Redis
down for longer than about a second) reaches the caller, which degrades: 503, a cache
miss, a paused loop.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

from shared.config import RedisConfig

RETRY_BASE_S = 0.05  # waits 0.1, 0.2, 0.4, 0.5 s...: a local restart is usually over in that time
RETRY_CAP_S = 0.5
CONNECT_TIMEOUT_S = 1.0
# An idle pooled connection is PINGed before reuse after this long: a cheap early notice of a
# server that went away, while busy connections pay nothing.
HEALTH_CHECK_INTERVAL_S = 30


def connect(config: RedisConfig) -> Redis:
    """A client for config.url; socket_timeout_s must stay above every blocking read (1 s)."""
    return Redis.from_url(
        config.url,
        retry=Retry(ExponentialBackoff(cap=RETRY_CAP_S, base=RETRY_BASE_S), config.retries),
        retry_on_error=[ConnectionError, TimeoutError],
        socket_timeout=config.socket_timeout_s,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
    )
