"""What the cache tests share: a cache app wired to real Redis, local Qdrant and an embedder,
and writes published on the stream exactly as the router publishes them."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from services.cache.app import create_app
from shared import bus
from shared.config import CacheConfig, Config, RedisConfig, load_config
from shared.keys import CACHE_WRITE_GROUP, CACHE_WRITE_STREAM
from shared.messages import CacheWrite, encode

PARIS = "what's the capital city of France"
PARAPHRASE = "What is the capital of France?"
SYSTEM = "You are a concise geography assistant."


def cache_config(redis_url: str, **cache: Any) -> Config:
    """A generous embedder timeout: a busy 2-core test machine must not turn hits into misses."""
    cache = {"embedder_timeout_s": 10.0, **cache}
    return dataclasses.replace(load_config(env={}), redis=RedisConfig(url=redis_url), cache=CacheConfig(**cache))


def cache_app(redis_url: str, **cache: Any) -> web.Application:
    return create_app(cache_config(redis_url, **cache))


def chat(question: str, system: str = SYSTEM, **params: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "system", "content": system},
                                          {"role": "user", "content": question}], **params}


def completion(answer: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": "smollm2", "choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}


async def remember(redis: Redis, body: dict[str, Any], answer: str, tenant: str = "",
                   created: float | None = None) -> dict[str, Any]:
    """Publish an accepted draft the way the router does; returns the completion it carries."""
    served = completion(answer)
    write = CacheWrite(request_id=uuid.uuid4().hex, body=body, completion=served, tenant=tenant,
                       created=time.time() if created is None else created)
    await bus.publish(redis, CACHE_WRITE_STREAM, encode(write), maxlen=100_000)
    return served


async def written(redis: Redis, timeout_s: float = 60.0) -> None:
    """Wait until the cache's writer has read and acked everything on the stream."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        groups = await redis.xinfo_groups(CACHE_WRITE_STREAM) if await redis.exists(CACHE_WRITE_STREAM) else []
        group = next((g for g in groups if g["name"] == CACHE_WRITE_GROUP.encode()), None)
        # Everything delivered (Redis 6.2 has no "lag" field to say so) and acked.
        if group is not None and group["pending"] == 0 and \
                group["last-delivered-id"] == (await redis.xinfo_stream(CACHE_WRITE_STREAM))["last-generated-id"]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the cache writer did not drain the stream in time")
