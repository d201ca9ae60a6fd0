"""What the closed-loop audit costs the answers: the same requests through a deployment with the audit
off (audit.sample_rate 0) and one auditing every accepted draft (1.0), side by side on one fake upstream,
one Redis and one MiniLM embedder, in alternating rounds of sequential plain requests (so drifting load
on the machine hits both alike). Reports each side's latency and the CPU its router and gateway spent per
request (the "on" side's after its audits caught up), and how many audits it finished and how long after the
last answer.

`python -m bench.audit [--rounds 12] [--per-round 40]`; results in bench/results/audit.json. Not part of
`python -m bench`'s default list (it starts the embedder: a minute on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from bench.harness import Deployment, draftgate, fake_upstream, redis_server, summarize, usage, write_result
from shared.keys import AUDIT_LABELLED_STREAM, AUDIT_STREAM
from tests.support import Service, free_port

SIDES = ("off", "on")
RATES = {"off": "0", "on": "1.0"}
ANSWER_TOKENS = "12"
DRAIN_S = 600.0  # after the last round, the audits still queued finish before the CPU is read


def order(round_index: int) -> tuple[str, ...]:
    """Which side goes first in a round: alternating, so neither always runs on a warmer machine."""
    return SIDES if round_index % 2 == 0 else SIDES[::-1]


def per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """CPU ms per request of each process kind, from CPU seconds read before and after."""
    return {name: round((after[name] - before[name]) * 1000 / requests, 3) for name in before}


def processes(deployment: Deployment) -> dict[str, list[psutil.Process]]:
    """The deployment's router and gateway processes, found by the ports they listen on."""
    ports = {"router": {int(url.rsplit(":", 1)[1]) for url in deployment.routers},
             "gateway": {int(deployment.gateway.rsplit(":", 1)[1])}}
    found: dict[str, list[psutil.Process]] = {"router": [], "gateway": []}
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            listening = {c.laddr.port for c in child.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
            for kind, wanted in ports.items():
                if listening & wanted:
                    found[kind].append(child)
    return found


def cpu_s(found: dict[str, list[psutil.Process]]) -> dict[str, float]:
    return {kind: sum(usage(p).cpu_s for p in procs) for kind, procs in found.items()}


@contextlib.contextmanager
def embedder(logs: Path) -> Iterator[str]:
    port = free_port()
    service = Service("services.embedder", {"DRAFTGATE_EMBEDDER_PORT": str(port)}, port, logs / "embedder.log")
    service.start(timeout_s=300)
    try:
        yield service.url
    finally:
        service.stop()


def audits_left(db: redis.Redis) -> int:
    """Samples not yet audited: unread by the group (its lag, Redis 7) plus read and not yet acked."""
    groups = db.xinfo_groups(AUDIT_STREAM)
    return sum(int(g.get("lag") or 0) + int(g["pending"]) for g in groups) if groups else db.xlen(AUDIT_STREAM)


def drain(db: redis.Redis, timeout_s: float = DRAIN_S) -> float:
    """Wait for the audits to catch up; how long that took after the answers were all in."""
    started = time.monotonic()
    while audits_left(db) and time.monotonic() - started < timeout_s:
        time.sleep(0.2)
    return round(time.monotonic() - started, 1)


def measure(deployments: dict[str, Deployment], rounds: int, per_round: int, db: redis.Redis) -> dict[str, Any]:
    body = {"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    with httpx.Client(timeout=60) as client:
        for side in SIDES:  # warm-up
            for _ in range(5):
                client.post(f"{deployments[side].gateway}/v1/chat/completions", json=body).raise_for_status()
        found = {side: processes(deployments[side]) for side in SIDES}
        before = {side: cpu_s(found[side]) for side in SIDES}
        for index in range(rounds):
            for side in order(index):
                for _ in range(per_round):
                    started = time.perf_counter()
                    client.post(f"{deployments[side].gateway}/v1/chat/completions", json=body).raise_for_status()
                    times[side].append((time.perf_counter() - started) * 1000)
        drained_s = drain(db)
        after = {side: cpu_s(found[side]) for side in SIDES}
    result: dict[str, Any] = {side: {**summarize(times[side]), "cpu_ms_per_request": per_request(
        before[side], after[side], len(times[side]))} for side in SIDES}
    result["audit_backlog_drained_s"] = drained_s
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--per-round", type=int, default=40)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="draftgate-bench-audit-") as tmp:
        workdir = Path(tmp)
        for side in SIDES:
            (workdir / side).mkdir()
        with redis_server(workdir) as redis_url, embedder(workdir) as embedder_url, \
                fake_upstream("--port", "0", "--tokens", ANSWER_TOKENS) as upstream_url, \
                contextlib.ExitStack() as stack:
            deployments = {side: stack.enter_context(draftgate(
                redis_url.removesuffix("/0") + f"/{index + 1}", upstream_url, upstream_url, workdir / side,
                DRAFTGATE_AUDIT_SAMPLE_RATE=RATES[side], DRAFTGATE_CACHE_EMBEDDER_URL=embedder_url))
                for index, side in enumerate(SIDES)}
            db = redis.Redis.from_url(redis_url.removesuffix("/0") + "/2")  # the "on" side's database
            result = measure(deployments, args.rounds, args.per_round, db)
            audited = db.xlen(AUDIT_LABELLED_STREAM)
    result["audits_finished_on"] = audited
    result["load_average"] = [round(x, 2) for x in psutil.getloadavg()]
    path = write_result("audit", result)
    off, on = result["off"], result["on"]
    print(f"audit: p50 {off['p50_ms']} ms off, {on['p50_ms']} ms at 100% sampling (p99 {off['p99_ms']} / "
          f"{on['p99_ms']}); CPU ms per request off {off['cpu_ms_per_request']}, on {on['cpu_ms_per_request']}; "
          f"{audited} audits finished, {result['audit_backlog_drained_s']} s after the last answer; load average "
          f"{result['load_average']} -> {path}")
    return result


if __name__ == "__main__":
    main()
