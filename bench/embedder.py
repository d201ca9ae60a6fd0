"""Embedder backends compared in one run: torch, onnx (fp32) and onnx-int8, single and batched.

`python -m bench.embedder [--quick]`:

- in process: each backend's CPU milliseconds per input for one short input per call, a batch of
  32 short inputs, and a batch of 31 short inputs plus one past 256 tokens (padding's cost);
- as a service: each backend as a real embedder process, over HTTP, 1 caller (one input per request,
  back to back: a quiet cache) and 32 callers (micro-batched): inputs/s and the process's CPU
  milliseconds per input, and its resident memory;
- batching: the configured backend at 32 callers, batched vs one model call per input (max_batch 1),
  the figure this benchmark always reported (target >= 3.5x).

The machine is shared, so backends are never measured one after the other: all are loaded (and all
embedder processes started) together, and three rounds interleave them; figures sum the rounds.
Writes bench/results/embedder.json with ratios between backends measured in this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.harness import summarize, usage, write_result
from services.embedder.backends import LocalBackend, open_local_backend
from shared.config import EmbedderConfig, load_config
from tests.support import Service, free_port

BACKENDS = ("torch", "onnx", "onnx-int8")
CALLERS = 32
TARGET_RATIO = 3.5
SUBJECTS = ["the weather in Lisbon", "a recipe for bread", "the capital of Peru", "how tides work",
            "the history of the violin", "a good name for a cat", "sorting algorithms", "the price of gold",
            "how vaccines work", "the rules of chess", "a poem about autumn", "the speed of light"]
LONG = " ".join(f"Point {i}: the committee reviewed the budget, the hiring plan and the storage migration."
                for i in range(30))  # past 256 tokens: truncated


def texts(count: int) -> list[str]:
    """Short, distinct questions of chat-prompt length (about 10-15 tokens)."""
    return [f"Could you tell me something about {SUBJECTS[i % len(SUBJECTS)]}, question number {i}?"
            for i in range(count)]


def cpu_ms_per_input(call: Callable[[], object], inputs_per_call: int, calls: int) -> float:
    call()  # warm: first-call allocations
    started = time.process_time()
    for _ in range(calls):
        call()
    return round((time.process_time() - started) * 1000 / (calls * inputs_per_call), 3)


def in_process(backend: LocalBackend, calls: int) -> dict[str, float]:
    """CPU ms per input of model calls on the backend's own thread (tokenising included, no HTTP)."""
    one, batch, mixed = texts(1), texts(32), [*texts(31), LONG]
    return {"single": cpu_ms_per_input(lambda: backend.embed_now(one), 1, calls),
            "batch_32": cpu_ms_per_input(lambda: backend.embed_now(batch), 32, max(2, calls // 8)),
            "batch_32_one_long": cpu_ms_per_input(lambda: backend.embed_now(mixed), 32, max(2, calls // 16))}


async def drive(url: str, inputs: list[str], callers: int) -> dict[str, Any]:
    """`callers` workers send one input per request until all inputs are embedded."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in inputs:
        queue.put_nowait(text)
    latencies: list[float] = []

    async def caller(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            text = queue.get_nowait()
            started = time.perf_counter()
            async with session.post(url, json={"input": text, "model": "all-MiniLM-L6-v2",
                                               "encoding_format": "base64"}) as response:
                assert response.status == 200, await response.text()
                await response.read()
            latencies.append((time.perf_counter() - started) * 1000)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=callers)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(caller(session) for _ in range(callers)))
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "inputs_per_s": round(len(inputs) / elapsed, 1), "latencies": latencies}


@dataclass
class Tally:
    """One kind of run (a backend, single or batched) summed over the rounds."""

    inputs: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    per_round: list[float] = field(default_factory=list)  # inputs/s of each round
    latencies: list[float] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "inputs_per_s": round(self.inputs / self.seconds, 1),
                "inputs_per_s_by_round": self.per_round, "cpu_ms_per_input": round(self.cpu_s * 1000 / self.inputs, 3),
                "request_latency": summarize(self.latencies)}


def start_embedder(workdir: Path, backend: str, max_batch: int = 64) -> Service:
    port = free_port()
    env = {"DRAFTGATE_EMBEDDER_PORT": str(port), "DRAFTGATE_EMBEDDER_BACKEND": backend,
           "DRAFTGATE_EMBEDDER_MAX_BATCH": str(max_batch), "DRAFTGATE_LOGGING_LEVEL": "warning"}
    return Service("services.embedder", env, port, workdir / f"embedder-{backend}-{max_batch}.log").start(timeout_s=300)


def measure_round(service: Service, tally: Tally, inputs: int, callers: int) -> None:
    assert service.proc is not None
    process = psutil.Process(service.proc.pid)
    url = f"{service.url}/v1/embeddings"
    before = usage(process)
    result = asyncio.run(drive(url, texts(inputs), callers))
    tally.cpu_s += usage(process).cpu_s - before.cpu_s
    tally.inputs += inputs
    tally.seconds += result["seconds"]
    tally.per_round.append(result["inputs_per_s"])
    tally.latencies += result["latencies"]


def as_services(workdir: Path, plan: dict[str, tuple[str, int, int, int]], rounds: int) -> dict[str, Any]:
    """plan: run name -> (backend, max_batch, inputs per round, callers). Every embedder runs at once,
    idle between its turns, and the rounds interleave them, so load from outside falls on all alike."""
    services = {}
    try:
        for backend, max_batch in {(b, m) for b, m, _, _ in plan.values()}:
            services[backend, max_batch] = start_embedder(workdir, backend, max_batch)
        for service in services.values():  # warm-up: connections, allocator, caches
            asyncio.run(drive(f"{service.url}/v1/embeddings", texts(CALLERS), CALLERS))
        tallies = {name: Tally() for name in plan}
        for _ in range(rounds):
            for name, (backend, max_batch, inputs, callers) in plan.items():
                measure_round(services[backend, max_batch], tallies[name], inputs, callers)
        rss = {f"{backend}": round(usage(psutil.Process(s.proc.pid)).rss_bytes / 2**20, 1)  # type: ignore[union-attr]
               for (backend, max_batch), s in services.items() if max_batch > 1}
    finally:
        for service in services.values():
            service.stop()
    return {"runs": {name: tally.report() for name, tally in tallies.items()}, "rss_mb": rss}


def ratio(a: float, b: float) -> float:
    return round(a / b, 2)


def ratios(service: dict[str, dict[str, Any]], model: dict[str, dict[str, float]]) -> dict[str, Any]:
    """How much faster (throughput) and cheaper (CPU per input) each ONNX backend is than torch."""
    out: dict[str, Any] = {}
    for name in ("onnx", "onnx-int8"):
        out[f"{name}_vs_torch"] = {
            "service_inputs_per_s_single": ratio(service[name]["single"]["inputs_per_s"],
                                                 service["torch"]["single"]["inputs_per_s"]),
            "service_inputs_per_s_batched": ratio(service[name]["batched"]["inputs_per_s"],
                                                  service["torch"]["batched"]["inputs_per_s"]),
            "service_cpu_per_input_single": ratio(service["torch"]["single"]["cpu_ms_per_input"],
                                                  service[name]["single"]["cpu_ms_per_input"]),
            "service_cpu_per_input_batched": ratio(service["torch"]["batched"]["cpu_ms_per_input"],
                                                   service[name]["batched"]["cpu_ms_per_input"]),
            **{f"model_cpu_per_input_{kind}": ratio(model["torch"][kind], model[name][kind])
               for kind in model[name]},
        }
    return out


def in_process_all(threads: int, calls: int, rounds: int) -> dict[str, dict[str, float]]:
    """in_process() for every backend, loaded side by side and measured in interleaved rounds (mean)."""
    backends = {name: open_local_backend(EmbedderConfig(backend=name, threads=threads)) for name in BACKENDS}
    try:
        samples = [{name: in_process(backend, calls) for name, backend in backends.items()} for _ in range(rounds)]
    finally:
        for backend in backends.values():
            backend.shutdown()
    return {name: {kind: round(sum(s[name][kind] for s in samples) / rounds, 3) for kind in samples[0][name]}
            for name in BACKENDS}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.embedder")
    parser.add_argument("--quick", action="store_true", help="one short round: for development, not figures")
    args = parser.parse_args(argv)
    rounds, scale = (1, 0.25) if args.quick else (3, 1.0)
    settings = load_config().embedder
    model = in_process_all(settings.threads, calls=int(80 * scale), rounds=rounds)
    plan = {f"{name}/{kind}": (name, 64, int(inputs * scale), callers) for name in BACKENDS
            for kind, inputs, callers in (("single", 100, 1), ("batched", 400, CALLERS))}
    plan["one_per_input"] = (settings.backend, 1, int(100 * scale), CALLERS)
    with tempfile.TemporaryDirectory(prefix="draftgate-bench-embedder-") as tmp:
        measured = as_services(Path(tmp), plan, rounds)
    runs = measured["runs"]
    service = {name: {"single": runs[f"{name}/single"], "batched": runs[f"{name}/batched"],
                      "rss_mb": measured["rss_mb"][name]} for name in BACKENDS}
    default_batched = service[settings.backend]["batched"]
    speedup = ratio(default_batched["inputs_per_s"], runs["one_per_input"]["inputs_per_s"])
    result = {"model": settings.model, "default_backend": settings.backend, "threads": settings.threads,
              "callers": CALLERS, "max_wait_ms": settings.max_wait_ms, "rounds": rounds, "cpus": os.cpu_count(),
              "quick": args.quick, "model_cpu_ms_per_input": model, "service": service,
              "ratios": ratios(service, model),
              "batching": {"backend": settings.backend, "batched": default_batched,
                           "one_per_input": runs["one_per_input"], "speedup": speedup,
                           "target_speedup": TARGET_RATIO, "meets_target": speedup >= TARGET_RATIO},
              "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    write_result("embedder", result)
    for name in BACKENDS:
        one, many = service[name]["single"], service[name]["batched"]
        print(f"embedder {name}: {one['inputs_per_s']} inputs/s single ({one['cpu_ms_per_input']} CPU ms each), "
              f"{many['inputs_per_s']} batched at {CALLERS} callers ({many['cpu_ms_per_input']} CPU ms each), "
              f"RSS {service[name]['rss_mb']} MB; model call CPU ms per input {model[name]}")
    print(f"embedder ratios: {json.dumps(result['ratios'])}")
    print(f"embedder batching ({settings.backend}): batched {default_batched['inputs_per_s']} vs one per input "
          f"{runs['one_per_input']['inputs_per_s']} inputs/s: {speedup}x (target >= {TARGET_RATIO}x)")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
