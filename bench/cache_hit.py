"""Cache hits as clients see them: latency through the gateway of exact hits and of verified
semantic hits with each verifier, with real MiniLM, Redis and embedded Qdrant; the drafter check's
cost with the local SmolLM2; embedder calls per accepted miss (embed once).

`python -m bench.cache_hit`; results in bench/results/cache_hit.json. Semantic hits are measured on
new texts (the embedding included: each asked wording reaches a freshly started cache service once)
and on one text asked again (its vector then comes from the cache's memo). Variants:
  rules, learned            cache.verify, through the gateway
  learned+drafter (fake)    plus the drafter check against a fake drafter that answers a confident "Yes"
                            at once: what the check costs draftgate itself, through the gateway
  learned+drafter (SmolLM2) plus the drafter check against the local llama.cpp SmolLM2, POST /lookup on
                            the cache service: SmolLM2 never gives "Yes" 0.9 of its mass, so every
                            would-be hit is a miss that a gateway would hand to a router
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.harness import draftgate, fake_upstream, redis_server, summarize, write_result
from shared.config import CacheConfig
from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream
from tests.support import Service, free_port

REQUESTS = 300
WARMUP = 30
MODEL_REQUESTS = 20  # SmolLM2 takes up to about half a second per check here
ACCEPTED_MISSES = 20
SYSTEM = "You are a concise geography assistant."
# Stored and asked wordings of one question per place: every asked text is new to the cache service
# (after a restart), so its hit includes the embedding; asking one text again takes its vector from
# the memo (services/cache/memo.py), so repeated hits are measured apart.
PLACES = [
    "Albania", "Algeria", "Angola", "Argentina", "Armenia", "Australia", "Austria", "Azerbaijan", "Bangladesh",
    "Belarus", "Belgium", "Bolivia", "Botswana", "Brazil", "Bulgaria", "Cambodia", "Cameroon", "Canada", "Chad",
    "Chile", "China", "Colombia", "Croatia", "Cuba", "Cyprus", "Denmark", "Ecuador", "Egypt", "Estonia",
    "Ethiopia", "Fiji", "Finland", "France", "Gabon", "Georgia", "Germany", "Ghana", "Greece", "Guatemala",
    "Guinea", "Haiti", "Honduras", "Hungary", "Iceland", "India", "Indonesia", "Iran", "Iraq", "Ireland",
    "Israel", "Italy", "Jamaica", "Japan", "Jordan", "Kazakhstan", "Kenya", "Kuwait", "Laos", "Latvia",
    "Lebanon", "Liberia", "Libya", "Lithuania", "Madagascar", "Malawi", "Malaysia", "Mali", "Malta", "Mexico",
    "Moldova", "Mongolia", "Morocco", "Mozambique", "Namibia", "Nepal", "Nicaragua", "Niger", "Nigeria",
    "Norway", "Oman", "Pakistan", "Panama", "Paraguay", "Peru", "Poland", "Portugal", "Qatar", "Romania",
    "Russia", "Rwanda", "Senegal", "Serbia", "Singapore", "Slovakia", "Slovenia", "Somalia", "Spain",
    "Sudan", "Sweden", "Switzerland", "Syria", "Tanzania", "Thailand", "Togo", "Tunisia", "Turkey", "Uganda",
    "Ukraine", "Uruguay", "Uzbekistan", "Venezuela", "Vietnam", "Yemen", "Zambia", "Zimbabwe",
]
WARMUP_PLACES = 10  # the last ones: each variant warms up on them, then measures new texts on the rest


def stored(place: str) -> str:
    return f"what's the capital city of {place}"


def asked(place: str) -> str:
    return f"What is the capital of {place}?"


TARGETS = {"semantic_hit_p50_ms_max": 15.0, "exact_hit_p50_ms_max": 3.0}


def chat(question: str) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]}


class CacheServices:
    """The embedder, and a cache service that restarts with each verifier's settings."""

    def __init__(self, redis_url: str, workdir: Path) -> None:
        self.cache_port, embedder_port = free_port(), free_port()
        self.embedder_url = f"http://127.0.0.1:{embedder_port}"
        self.env = {"DRAFTGATE_REDIS_URL": redis_url, "DRAFTGATE_CACHE_PORT": str(self.cache_port),
                    "DRAFTGATE_EMBEDDER_PORT": str(embedder_port), "DRAFTGATE_LOGGING_LEVEL": "warning",
                    "DRAFTGATE_CACHE_EMBEDDER_URL": self.embedder_url,
                    "DRAFTGATE_CACHE_QDRANT_PATH": str(workdir / "qdrant")}
        self.workdir = workdir
        self.embedder = Service("services.embedder", self.env, embedder_port, workdir / "embedder.log")
        self.cache: Service | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cache_port}"

    def start(self, **env: str) -> None:
        if self.embedder.proc is None:
            self.embedder.start(timeout_s=180)
        if self.cache is not None:
            self.cache.stop()
        self.cache = Service("services.cache", {**self.env, **env}, self.cache_port,
                             self.workdir / "cache.log").start(timeout_s=60)

    def stop(self) -> None:
        for service in (self.cache, self.embedder):
            if service is not None:
                service.stop()


@contextlib.contextmanager
def cache_services(redis_url: str, workdir: Path) -> Iterator[CacheServices]:
    services = CacheServices(redis_url, workdir)
    try:
        yield services
    finally:
        services.stop()


@contextlib.contextmanager
def local_model(workdir: Path) -> Iterator[str]:
    """SmolLM2 served by llama.cpp, as `make run` starts it; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    tiers = {"DRAFTGATE_DRAFTER_BASE_URL": url, "DRAFTGATE_DRAFTER_MODEL": "smollm2",
             "DRAFTGATE_HEAVYWEIGHT_BASE_URL": url, "DRAFTGATE_HEAVYWEIGHT_MODEL": "smollm2"}
    model = Service("scripts.local_model", tiers, port, workdir / "model.log")
    try:
        yield model.start(wait_path="/v1/models", timeout_s=300).url + "/v1"
    finally:
        model.stop()


def verifier_env(verify: str, drafter_url: str | None = None, drafter_model: str = "fake-drafter",
                 timeout_s: float | None = None) -> dict[str, str]:
    env = {"DRAFTGATE_CACHE_VERIFY": verify}
    if drafter_url is not None:
        env.update(DRAFTGATE_CACHE_VERIFY_DRAFTER="true", DRAFTGATE_DRAFTER_BASE_URL=drafter_url,
                   DRAFTGATE_DRAFTER_MODEL=drafter_model)
    if timeout_s is not None:
        env["DRAFTGATE_CACHE_VERIFY_DRAFTER_TIMEOUT_S"] = str(timeout_s)
    return env


async def timed(session: aiohttp.ClientSession, url: str, body: dict[str, Any], tier: str,
                verified: str | None) -> float | None:
    """The latency of one answer; None when it was not the expected hit (a verifier said no)."""
    started = time.perf_counter()
    async with session.post(url, json=body) as response:
        await response.read()
        seen = (response.headers.get("X-Cache"), response.headers.get("X-Cache-Verified"))
    latency = (time.perf_counter() - started) * 1000
    if seen == (None, None):
        return None
    if seen != (tier, verified):
        raise RuntimeError(f"expected a {tier} hit verified by {verified}, got {seen}")
    return latency


def summary(latencies: list[float | None]) -> dict[str, Any]:
    served = [latency for latency in latencies if latency is not None]
    return {**summarize(served), "not_served": len(latencies) - len(served)}


async def hits(gateway_url: str, tier: str, verified: str | None, questions: list[str], repeated: str,
               ) -> dict[str, Any]:
    """Warm up, then each new question once (embedding included), then one question REQUESTS times."""
    url = f"{gateway_url}/v1/chat/completions"
    warmup, new = questions[-WARMUP_PLACES:], questions[:-WARMUP_PLACES]
    async with aiohttp.ClientSession() as session:
        for question in warmup * (WARMUP // WARMUP_PLACES):
            await timed(session, url, chat(question), tier, verified)
        first = [await timed(session, url, chat(question), tier, verified) for question in new]
        again = [await timed(session, url, chat(repeated), tier, verified) for _ in range(REQUESTS)]
    return {"new_text": summary(first), "repeated_text": summary(again)}


async def would_be_hits(cache_url: str) -> dict[str, Any]:
    """POST /lookup of new paraphrases against a cache asking the real model; latency and outcomes."""
    latencies, outcomes = [], Counter[str]()
    async with aiohttp.ClientSession() as session:
        for place in PLACES[:MODEL_REQUESTS]:
            started = time.perf_counter()
            async with session.post(f"{cache_url}/lookup", json={"body": chat(asked(place)), "timeout_s": 60}) as r:
                found = await r.json()
            latencies.append((time.perf_counter() - started) * 1000)
            outcomes[found.get("verified", "miss") if found["hit"] else "miss"] += 1
        async with session.get(f"{cache_url}/cache/stats") as response:
            rejected = (await response.json())["semantic"]["rejected"]
    return {**summarize(latencies), "outcomes": dict(outcomes), "rejected": rejected}


async def store(gateway_url: str, questions: list[str], entries: int, look_up: bool = True,
                timeout_s: float = 60) -> None:
    """Ask each question once (accepted drafts) and wait until the cache holds `entries` semantic entries.
    Without look_up, the gateway skips the lookup (Cache-Control: no-cache): a question answered from
    the cache would not be stored."""
    headers = {} if look_up else {"Cache-Control": "no-cache"}
    async with aiohttp.ClientSession() as session:
        for question in questions:
            async with session.post(f"{gateway_url}/v1/chat/completions", json=chat(question),
                                    headers=headers) as response:
                await response.read()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            async with session.get(f"{gateway_url}/cache/stats") as response:
                if (await response.json())["semantic"]["entries"] >= entries:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("the accepted drafts never reached the cache")


def counters(url: str, names: tuple[str, ...]) -> dict[str, float]:
    """Counter samples from a /metrics page, by name with labels."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    pattern = re.compile(r"^(\S+) (\S+)$")
    return {m[1]: float(m[2]) for line in text.splitlines() if line.startswith(names) and (m := pattern.match(line))}


async def embeddings_per_accepted_miss(services: CacheServices, gateway_url: str, entries_before: int
                                       ) -> dict[str, Any]:
    names = ("draftgate_embedder_requests_total", "draftgate_embedder_inputs_total")
    vectors = ("draftgate_cache_vectors_total",)
    before, vectors_before = counters(services.embedder_url, names), counters(services.url, vectors)
    questions = [f"Name a town on the river number {i} of the atlas." for i in range(ACCEPTED_MISSES)]
    await store(gateway_url, questions, entries_before + ACCEPTED_MISSES)
    after, vectors_after = counters(services.embedder_url, names), counters(services.url, vectors)
    delta = {name: after[name] - before.get(name, 0.0) for name in names}
    reused = sum(v - vectors_before.get(k, 0.0) for k, v in vectors_after.items() if 'source="memo"' in k)
    return {"accepted_misses": ACCEPTED_MISSES,
            "embedder_calls_per_accepted_miss": round(delta[names[0]] / ACCEPTED_MISSES, 3),
            "embedder_inputs_per_accepted_miss": round(delta[names[1]] / ACCEPTED_MISSES, 3),
            "without_the_memo": round((delta[names[1]] + reused) / ACCEPTED_MISSES, 3)}


def run(services: CacheServices, gateway_url: str, model_url: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    questions = [asked(place) for place in PLACES]
    with FakeUpstream(default=confident("Yes")) as yes_drafter:
        services.start(**verifier_env("learned"))
        asyncio.run(store(gateway_url, [stored(place) for place in PLACES], len(PLACES), look_up=False))
        exact = [stored(place) for place in PLACES]
        results["exact_hit"] = asyncio.run(hits(gateway_url, "exact", None, exact, exact[0]))["repeated_text"]
        for name, env in (("rules", verifier_env("rules")), ("learned", verifier_env("learned")),
                          ("learned+drafter (fake)", verifier_env("learned", yes_drafter.url))):
            services.start(**env)  # a new process: nothing memoised
            verified = name.split(" ")[0]
            results[f"semantic_hit {name}"] = asyncio.run(hits(gateway_url, "semantic", verified, questions,
                                                               questions[0]))
    services.start(**verifier_env("learned", model_url, "smollm2", timeout_s=30))
    results["would_be_hit learned+drafter (SmolLM2), POST /lookup"] = asyncio.run(would_be_hits(services.url))
    services.start(**verifier_env("learned"))
    results["embed_once"] = asyncio.run(embeddings_per_accepted_miss(services, gateway_url, len(PLACES)))
    return results


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="draftgate-bench-") as tmp:
        workdir = Path(tmp)
        with redis_server(workdir) as redis_url, cache_services(redis_url, workdir) as services, \
                local_model(workdir) as model_url, \
                fake_upstream("--port", "0", "--tokens", "8") as upstream_url, \
                draftgate(redis_url, upstream_url, upstream_url, workdir,
                          DRAFTGATE_GATEWAY_CACHE_URL=services.url) as deployment:
            result = {**run(services, deployment.gateway, model_url), "defaults": {
                "similarity_floor": CacheConfig().similarity_floor, "verify": CacheConfig().verify,
                "verify_drafter_min_prob": CacheConfig().verify_drafter_min_prob}, "targets": TARGETS}
    path = write_result("cache_hit", result)
    semantic = {name.removeprefix("semantic_hit "): value for name, value in result.items()
                if name.startswith("semantic_hit")}
    print(f"cache_hit: through the gateway, exact hit p50 {result['exact_hit']['p50_ms']} ms; semantic hit p50 "
          "(new text / repeated text) "
          + ", ".join(f"{name} {v['new_text']['p50_ms']} / {v['repeated_text']['p50_ms']} ms" for name, v in
                      semantic.items())
          + f"; embedder calls per accepted miss {result['embed_once']['embedder_calls_per_accepted_miss']} -> {path}")
    return result


if __name__ == "__main__":
    main()
