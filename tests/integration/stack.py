"""A running draftgate for integration tests: fake upstream, router processes, a gateway."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openai
import redis

from tests.fakes.upstream import FakeUpstream
from tests.support import Service, free_port

_databases = itertools.cycle(range(1, 16))


def ask(content: str) -> list[dict[str, str]]:
    """One user message, as `messages`."""
    return [{"role": "user", "content": content}]


@dataclass
class Stack:
    redis_url: str
    fake: FakeUpstream
    logs: Path
    env: dict[str, str]
    routers: list[Service] = field(default_factory=list)
    gateway: Service | None = None

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    def client(self, **options: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="test-key", max_retries=0, **options)

    def async_client(self, **options: object) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="test-key", max_retries=0, **options)

    def add_router(self, **env: str) -> Service:
        port = free_port()
        router = Service("services.router", {**self.env, **env, "DRAFTGATE_ROUTER_PORT": str(port)}, port,
                         self.logs / f"router-{len(self.routers)}.log")
        self.routers.append(router.start())
        return router

    def start_gateway(self, **env: str) -> Service:
        port = free_port()
        self.gateway = Service("services.gateway", {**self.env, **env, "DRAFTGATE_GATEWAY_PORT": str(port)}, port,
                               self.logs / "gateway.log").start()
        return self.gateway

    def stop(self) -> None:
        for service in [self.gateway, *self.routers]:
            if service is not None:
                service.stop()


@contextlib.contextmanager
def running_stack(redis_server: str, logs: Path, fake: FakeUpstream, **env: str) -> Iterator[Stack]:
    stack = start_stack(redis_server, logs, fake, **env)
    try:
        yield stack
    finally:
        stack.stop()


def start_stack(redis_server: str, logs: Path, fake: FakeUpstream, routers: int = 1,
                **env: str) -> Stack:
    """Gateway and routers as real subprocesses, on their own Redis database."""
    redis_url = f"{redis_server}/{next(_databases)}"
    redis.Redis.from_url(redis_url).flushdb()
    base_env = {
        "DRAFTGATE_REDIS_URL": redis_url,
        "DRAFTGATE_DRAFTER_BASE_URL": fake.url,
        "DRAFTGATE_DRAFTER_MODEL": "fake-drafter",
        "DRAFTGATE_HEAVYWEIGHT_BASE_URL": fake.url,
        "DRAFTGATE_HEAVYWEIGHT_MODEL": "fake-heavy",
        "DRAFTGATE_GATEWAY_CACHE_URL": "null",
        "DRAFTGATE_LOGGING_LEVEL": "info",
        # The production audit (2% of accepted drafts re-asked of the heavyweight) would add upstream calls
        # that tests counting the fake's requests do not expect; test_audit turns it on.
        "DRAFTGATE_AUDIT_SAMPLE_RATE": "0",
        **env,
    }
    stack = Stack(redis_url=redis_url, fake=fake, logs=logs, env=base_env)
    try:
        for _ in range(routers):
            stack.add_router()
        stack.start_gateway()
    except Exception:
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def running_cached_stack(redis_server: str, logs: Path, fake: FakeUpstream) -> Iterator[tuple[Stack, Service]]:
    """A stack whose gateway looks answers up in a real cache service backed by the MiniLM embedder;
    yields the stack and the cache service. Timeouts are generous: a busy 2-core test machine must
    not turn hits into misses."""
    cache_port, embedder_port = free_port(), free_port()
    stack = start_stack(redis_server, logs, fake, DRAFTGATE_GATEWAY_CACHE_URL=f"http://127.0.0.1:{cache_port}",
                        DRAFTGATE_GATEWAY_CACHE_TIMEOUT_S="10")
    env = {**stack.env, "DRAFTGATE_CACHE_PORT": str(cache_port), "DRAFTGATE_EMBEDDER_PORT": str(embedder_port),
           "DRAFTGATE_CACHE_EMBEDDER_URL": f"http://127.0.0.1:{embedder_port}",
           "DRAFTGATE_CACHE_QDRANT_PATH": str(logs / "qdrant"), "DRAFTGATE_CACHE_EMBEDDER_TIMEOUT_S": "10"}
    services: list[Service] = []
    try:
        services.append(Service("services.embedder", env, embedder_port, logs / "embedder.log").start(timeout_s=180))
        cache = Service("services.cache", env, cache_port, logs / "cache.log").start(timeout_s=60)
        services.append(cache)
        yield stack, cache
    finally:
        for service in reversed(services):
            service.stop()
        stack.stop()
