"""What every benchmark needs: a private Redis, the fake upstream as its own process,
draftgate's services as subprocesses, percentiles, and a results file."""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from tests.support import REPO, Service, free_port

RESULTS_DIR = REPO / "bench" / "results"


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(200):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def fake_upstream(*args: str, module: str = "tests.fakes.upstream") -> Iterator[str]:
    """A fake upstream in its own process (its own core share); yields its base URL.

    `module` prints "listening URL" first, as `python -m tests.fakes.upstream` does."""
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first_line = proc.stdout.readline().strip()
        if not first_line.startswith("listening "):
            raise RuntimeError(f"fake upstream did not start: {first_line!r}")
        yield first_line.removeprefix("listening ")
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass(frozen=True)
class Deployment:
    gateway: str
    routers: list[str]


@contextlib.contextmanager
def draftgate(redis_url: str, drafter_url: str, heavyweight_url: str, logs: Path, routers: int = 1,
              **env: str) -> Iterator[Deployment]:
    """Router(s) and a gateway as real processes; yields their base URLs."""
    common = {"DRAFTGATE_REDIS_URL": redis_url, "DRAFTGATE_DRAFTER_BASE_URL": drafter_url,
              "DRAFTGATE_DRAFTER_MODEL": "fake-drafter", "DRAFTGATE_HEAVYWEIGHT_BASE_URL": heavyweight_url,
              "DRAFTGATE_HEAVYWEIGHT_MODEL": "fake-heavy", "DRAFTGATE_GATEWAY_CACHE_URL": "null",
              "DRAFTGATE_LOGGING_LEVEL": "warning",
              # The production audit's extra heavyweight calls are no part of these measurements.
              "DRAFTGATE_AUDIT_SAMPLE_RATE": "0", **env}
    services: list[Service] = []
    try:
        for index in range(routers):
            port = free_port()
            services.append(Service("services.router", {**common, "DRAFTGATE_ROUTER_PORT": str(port)}, port,
                                    logs / f"router-{index}.log").start())
        port = free_port()
        gateway = Service("services.gateway", {**common, "DRAFTGATE_GATEWAY_PORT": str(port)}, port,
                          logs / "gateway.log").start()
        services.append(gateway)
        yield Deployment(gateway=gateway.url, routers=[service.url for service in services[:-1]])
    finally:
        for service in reversed(services):
            service.stop()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def summarize(latencies_ms: list[float]) -> dict[str, float]:
    return {"n": len(latencies_ms), "p50_ms": round(percentile(latencies_ms, 50), 3),
            "p99_ms": round(percentile(latencies_ms, 99), 3), "mean_ms": round(statistics.fmean(latencies_ms), 3)}


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                **result}, indent=2) + "\n")
    return path


@dataclass(frozen=True)
class Usage:
    """A process's resident memory and the CPU time it has used so far."""

    rss_bytes: int
    cpu_s: float


def usage(process: psutil.Process) -> Usage:
    with process.oneshot():
        times = process.cpu_times()
        return Usage(process.memory_info().rss, times.user + times.system)


def tree_usage(process: psutil.Process) -> Usage:
    """A process and all its descendants (a service's worker processes) together; the CPU of
    children that ended and were waited for is included, so a worker restarted mid-run loses none."""
    with process.oneshot():
        times = process.cpu_times()
        rss, cpu_s = process.memory_info().rss, times.user + times.system + times.children_user + times.children_system
        children = process.children()
    for child in children:
        with contextlib.suppress(psutil.Error):  # ended since it was listed: its parent's children_* have it
            below = tree_usage(child)
            rss, cpu_s = rss + below.rss_bytes, cpu_s + below.cpu_s
    return Usage(rss, cpu_s)


def child_process(*words: str) -> psutil.Process:
    """This process's child whose command line holds all of `words` (a fake upstream)."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if all(word in child.cmdline() for word in words):
                return child
    raise LookupError(f"no child process runs {' '.join(words)}")
