"""Local model path: the llama.cpp server called directly versus through draftgate.

`python -m bench.local_model` starts its own model server, Redis, router and gateway, sends the
same 20 short prompts three ways and writes bench/results/local_model.json:
  direct           - the model server, plain request (what a client gets without draftgate)
  direct_logprobs  - the model server with logprobs/top_logprobs=k (the drafter's upstream work)
  draftgate        - through gateway and router (draft, entropy decision, escalation if unsure)
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from bench.harness import draftgate, redis_server, write_result
from shared.config import load_config
from tests.support import Service, free_port

MODEL = "smollm2"
MAX_TOKENS = 32
PROMPTS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Name the largest planet in our solar system.",
    "What gas do plants absorb from the air?",
    "Who wrote Romeo and Juliet?",
    "What is 12 times 12?",
    "What is the boiling point of water in Celsius?",
    "Translate 'thank you' into Spanish.",
    "What colour do you get by mixing blue and yellow?",
    "Give one synonym for 'happy'.",
    "What is the chemical symbol for gold?",
    "How many days are in a leap year?",
    "Name a mammal that can fly.",
    "What is the opposite of 'ancient'?",
    "Which ocean is the largest?",
    "What does a thermometer measure?",
    "Write a haiku about the sea.",
    "What year did the first person walk on the Moon?",
    "Explain in one sentence what a noun is.",
    "What is the square root of 81?",
]


@dataclass
class Sample:
    latency_ms: float
    completion_tokens: int
    decision: str | None = None


@contextlib.contextmanager
def stack(workdir: Path) -> Iterator[tuple[str, str]]:
    """Model server, router and gateway as `make run` would start them; yields (model_url, gateway_url)."""
    port = free_port()
    model_url = f"http://127.0.0.1:{port}/v1"
    tiers = {"DRAFTGATE_DRAFTER_BASE_URL": model_url, "DRAFTGATE_DRAFTER_MODEL": MODEL,
             "DRAFTGATE_HEAVYWEIGHT_BASE_URL": model_url, "DRAFTGATE_HEAVYWEIGHT_MODEL": MODEL}
    model = Service("scripts.local_model", tiers, port, workdir / "model.log")
    try:
        model.start(wait_path="/v1/models", timeout_s=300)
        with redis_server(workdir) as redis_url, \
                draftgate(redis_url, model_url, model_url, workdir, **tiers) as deployment:
            yield model_url, f"{deployment.gateway}/v1"
    finally:
        model.stop()


def ask(client: openai.OpenAI, model: str, prompt: str, model_url: str, **extra: Any) -> Sample:
    start = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS, temperature=0,
        seed=1, **extra)
    latency_ms = (time.perf_counter() - start) * 1000
    completion = raw.parse()
    tokens = completion.usage.completion_tokens if completion.usage else count_tokens(
        model_url, completion.choices[0].message.content or "")
    return Sample(latency_ms, tokens, raw.headers.get("x-routing-decision"))


def count_tokens(model_url: str, text: str) -> int:
    """Answers that come without usage are counted with the model server's own tokenizer."""
    base = model_url.removesuffix("/v1")
    return len(httpx.post(f"{base}/extras/tokenize", json={"input": text}, timeout=30).json()["tokens"])


def summarise(samples: list[Sample]) -> dict[str, Any]:
    latencies = sorted(s.latency_ms for s in samples)
    tokens = sum(s.completion_tokens for s in samples)
    return {
        "median_latency_ms": round(statistics.median(latencies), 1),
        "p90_latency_ms": round(latencies[int(0.9 * (len(latencies) - 1))], 1),
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / (sum(latencies) / 1000), 1),
    }


def added(through: list[Sample], direct: list[Sample], only: str | None = None) -> float | None:
    pairs = [t.latency_ms - d.latency_ms for t, d in zip(through, direct, strict=True)
             if only is None or t.decision == only]
    return round(statistics.median(pairs), 1) if pairs else None


def run(model_url: str, gateway_url: str) -> dict[str, Any]:
    """Each prompt three ways back to back, so drifting machine load hits all three alike. The order
    rotates: llama.cpp reuses the previous request's prompt cache, which favours whoever goes second."""
    k = load_config().routing.top_logprobs
    samples: dict[str, list[Sample]] = {"direct": [], "direct_logprobs": [], "draftgate": []}
    with openai.OpenAI(base_url=model_url, api_key="unused", max_retries=0, timeout=300) as direct, \
            openai.OpenAI(base_url=gateway_url, api_key="unused", max_retries=0, timeout=300) as gateway:
        ways = {"direct": lambda p: ask(direct, MODEL, p, model_url),
                "direct_logprobs": lambda p: ask(direct, MODEL, p, model_url, logprobs=True, top_logprobs=k),
                "draftgate": lambda p: ask(gateway, "auto", p, model_url)}
        ways["direct"](PROMPTS[0])
        ways["draftgate"](PROMPTS[0])
        names = list(ways)
        for i, prompt in enumerate(PROMPTS):
            for name in names[i % 3:] + names[:i % 3]:
                samples[name].append(ways[name](prompt))
    plain, with_logprobs, through = samples["direct"], samples["direct_logprobs"], samples["draftgate"]
    return {
        "prompts": len(PROMPTS), "max_tokens": MAX_TOKENS, "top_logprobs": k, "temperature": 0,
        "cpus": os.cpu_count(), "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "direct": summarise(plain),
        "direct_logprobs": summarise(with_logprobs),
        "draftgate": {**summarise(through), "decisions": dict(Counter(s.decision or "none" for s in through))},
        "median_added_latency_ms": {
            "vs_direct": added(through, plain),
            "vs_direct_logprobs": added(through, with_logprobs),
            "accepted_vs_direct": added(through, plain, only="accept"),
            "accepted_vs_direct_logprobs": added(through, with_logprobs, only="accept"),
        },
        "samples": {"direct": [asdict(s) for s in plain], "direct_logprobs": [asdict(s) for s in with_logprobs],
                    "draftgate": [asdict(s) for s in through]},
    }


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="draftgate-bench-") as tmp, stack(Path(tmp)) as (model_url, gateway_url):
        result = run(model_url, gateway_url)
    path = write_result("local_model", result)
    direct, through = result["direct"], result["draftgate"]
    print(f"local_model: median {direct['median_latency_ms']} ms / {direct['tokens_per_s']} tokens/s direct, "
          f"{through['median_latency_ms']} ms / {through['tokens_per_s']} tokens/s through draftgate "
          f"(added {result['median_added_latency_ms']['vs_direct']} ms; decisions {through['decisions']}) -> {path}")
    return result


if __name__ == "__main__":
    main()
