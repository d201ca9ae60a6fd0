"""draftgate beside LiteLLM's proxy, against the same fake upstream in the same run (issue #12).

One fake upstream process (bench/peers_upstream.py: 16 sure tokens, no delay) answers three ways of
reaching it, each sent the same request bodies (only `model` differs), plain and streamed:
  - direct: the fake itself, the baseline;
  - draftgate: gateway + two routers + Redis, from a tree exported from `--commit` (default HEAD),
    with every feature of issue #12 on (bench.peers_stack.features_on: two deployments per tier,
    each with rpm/tpm limits checked in Redis, retries, breaker), `model: auto` (the drafts are
    sure, so each request is one drafter call, accepted); the same with `model: drafter` (the tier
    forced, no routing) as `draftgate-drafter`; and as `draftgate-single` a second draftgate at its
    defaults (one deployment per tier, no limits) on another Redis database, for reference; with
    `--before <rev>`, as `draftgate-before` a third with every feature on from that commit, on a third
    database (a change measured before and after in one run);
  - litellm-<server>-<workers>: LiteLLM's proxy (`make bench-peers` installs it into its own
    virtualenv), the fake as an OpenAI-compatible model, once per `--litellm-variants` entry (by
    default uvicorn, its default server, with a worker per core as its docs advise, and granian
    with one and with two; uvicorn with one was never the best in two runs); every ratio is taken
    against the best variant for that metric, LiteLLM at its fastest in this run. What it is set
    to is in bench/peers_stack.py and in the results.
Latency: one client, requests one after another, in rounds that interleave the targets (so a busy
moment of the shared machine falls on all of them); the added p50/p99 is each proxy's minus
direct's. CPU: `--clients` closed-loop clients send `--cpu-requests` requests per target and mode,
in rounds; each proxy's processes' CPU (psutil, user + system, worker children included) over the
round divided by its requests; the median round counts. The fake's counters check that every proxy
made exactly one upstream call per request (else the run is INVALID).
Targets (PASS/FAIL): draftgate's CPU per request at most 1/6 of LiteLLM's, its added p50 at most 1/4.

`python -m bench.peers --litellm PATH/bin/litellm [--commit HEAD|<rev>|worktree] [--quick]`; results
in bench/results/peers.json and peers.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import uvloop

from bench import peers_report as report
from bench.harness import RESULTS_DIR, child_process, fake_upstream, redis_server, tree_usage, write_result
from bench.peers_stack import (
    Proxy,
    describe,
    draftgate,
    export_tree,
    features_on,
    litellm,
    litellm_config,
    litellm_env,
    litellm_version,
    rate_limited_deployments,
    redis_db,
    resolve_commit,
)
from bench.peers_upstream import ANSWER_TOKENS, answer_words

NAME = "peers"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
MODES = {"plain": False, "stream": True}
FORCED = "draftgate-drafter"
SINGLE = "draftgate-single"
BEFORE = "draftgate-before"
FEATURE_DEPLOYMENTS = ("drafter-a", "drafter-b")  # what features_on names the drafter's two
DEFAULT_VARIANTS = "uvicorn:2,granian:1,granian:2"
CLIENT_KEEPALIVE_S = 2.0
# Dropped before an answer came: tried again (and counted). LiteLLM's uvicorn dropped one of 32
# clients' connections mid-run on 2026-12-04, which voided the run.
RETRIED_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
MAX_RETRIES = 2
ROUTERS = 2  # one per core, as bench/overhead.py runs them
EXPECTED_TEXT = "".join(answer_words(ANSWER_TOKENS))


@dataclass(frozen=True)
class Target:
    """Where one kind of request goes, and the processes it costs (none for the fake itself)."""

    name: str
    endpoint: str
    model: str
    proxy: Proxy | None = None
    retried: Counter[str] = field(default_factory=Counter, compare=False)  # mode -> requests tried again

    def body(self, stream: bool) -> dict[str, Any]:
        return {"model": self.model, "messages": MESSAGES, **({"stream": True} if stream else {})}

    def cpu_s(self) -> dict[str, float]:
        return self.proxy.cpu_s() if self.proxy else {}

    def pids(self) -> set[int]:
        return self.proxy.pids() if self.proxy else set()


# The load.

async def post(session: aiohttp.ClientSession, target: Target, stream: bool) -> tuple[float, bytes, Mapping[str, str]]:
    """One request, timed from its first try. A connection the server dropped before answering (a
    pooled keep-alive it closed, a worker it replaced) is tried again, at most MAX_RETRIES times, as
    any HTTP client's retry would; every retry is counted in `target.retried` and reported, so a peer
    that needed them is seen, not hidden, and no single dropped connection voids a run."""
    started = time.perf_counter()
    mode = "stream" if stream else "plain"
    for attempt in range(MAX_RETRIES + 1):
        try:
            async with session.post(target.endpoint, json=target.body(stream)) as response:
                raw = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{target.name} answered {response.status}: {raw[:500]!r}")
                return (time.perf_counter() - started) * 1000, raw, response.headers
        except RETRIED_ERRORS as exc:
            if attempt == MAX_RETRIES:
                raise RuntimeError(f"{target.name} ({mode}): {exc!r}, {MAX_RETRIES} retries") from exc
            target.retried[mode] += 1
        except aiohttp.ClientError as exc:
            raise RuntimeError(f"{target.name} ({mode}): {exc!r}") from exc
    raise AssertionError("unreachable: the last try returns or raises")


async def sequential(session: aiohttp.ClientSession, target: Target, stream: bool, count: int) -> list[float]:
    return [(await post(session, target, stream))[0] for _ in range(count)]


async def closed_loop(session: aiohttp.ClientSession, target: Target, stream: bool, clients: int,
                      total: int) -> float:
    """`clients` clients, each sending its next request when its last is answered, until `total`
    were sent; returns the seconds it took."""
    remaining = total

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await post(session, target, stream)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


async def validate(session: aiohttp.ClientSession, target: Target, stream: bool) -> str | None:
    """One request whose answer must be the fake's text, whole; returns draftgate's routing decision."""
    _, raw, headers = await post(session, target, stream)
    text = report.answer_text(raw, stream)
    if text != EXPECTED_TEXT:
        raise RuntimeError(f"{target.name} ({'stream' if stream else 'plain'}) answered {text!r}, "
                           f"not the fake's {EXPECTED_TEXT!r}")
    return headers.get("X-Routing-Decision")


async def upstream_counts(session: aiohttp.ClientSession, origin: str) -> dict[str, int]:
    async with session.get(f"{origin}/counts") as response:
        return await response.json()


def rotated(targets: Sequence[Target], by: int) -> list[Target]:
    """The targets in another order each round, so none always runs right after another."""
    shift = by % len(targets)
    return [*targets[shift:], *targets[:shift]]


# The phases.

async def warm_up(session: aiohttp.ClientSession, targets: Sequence[Target],
                  args: argparse.Namespace) -> dict[str, dict[str, str | None]]:
    """Every target and mode: answers checked, then sequential and concurrent requests (so each of
    LiteLLM's workers and both routers have served before anything is measured)."""
    decisions: dict[str, dict[str, str | None]] = {}
    for mode, stream in MODES.items():
        for target in targets:
            decisions.setdefault(mode, {})[target.name] = await validate(session, target, stream)
            await sequential(session, target, stream, args.warmup)
            await closed_loop(session, target, stream, args.clients, args.clients * 10)
    return decisions


async def limits_at_work(session: aiohttp.ClientSession, targets: Sequence[Target], redis_url: str) -> list[str]:
    """The deployments with rate-limit state in Redis right after a few requests to the features-on
    draftgate (the state expires about a second after its last call at these limits). Eight
    requests over two routers give one of them at least two, so round robin reaches both."""
    ours = next(t for t in targets if t.name == report.DRAFTGATE)
    await sequential(session, ours, False, 8)
    return rate_limited_deployments(redis_url)


async def idle_cpu(targets: Sequence[Target], seconds: float) -> dict[str, float]:
    """What each proxy spends with no request at all (heartbeats, schedulers), in CPU ms per second;
    it is inside the CPU rounds' figures too, as it would be in production."""
    proxies = [t for t in targets if t.proxy]
    before = {t.name: sum(t.cpu_s().values()) for t in proxies}
    await asyncio.sleep(seconds)
    return {t.name: round((sum(t.cpu_s().values()) - before[t.name]) * 1000 / seconds, 3) for t in proxies}


async def latency_phase(session: aiohttp.ClientSession, targets: Sequence[Target], rounds: int,
                        per_round: int) -> dict[str, list[dict[str, list[float]]]]:
    """mode -> one {target: latencies} per round."""
    result: dict[str, list[dict[str, list[float]]]] = {mode: [] for mode in MODES}
    for index in range(rounds):
        for mode, stream in MODES.items():
            this_round = {}
            for target in rotated(targets, index):
                this_round[target.name] = await sequential(session, target, stream, per_round)
            result[mode].append(this_round)
    return result


async def cpu_round(session: aiohttp.ClientSession, target: Target, stream: bool, upstream: psutil.Process,
                    origin: str, clients: int, requests: int) -> dict[str, Any]:
    counts_before, upstream_before, before = await upstream_counts(session, origin), tree_usage(upstream).cpu_s, \
        target.cpu_s()
    elapsed = await closed_loop(session, target, stream, clients, requests)
    after, upstream_after = target.cpu_s(), tree_usage(upstream).cpu_s
    counts_after = await upstream_counts(session, origin)
    return {"requests": requests, "requests_per_s": round(requests / elapsed, 1),
            "cpu_ms": report.cpu_ms_per_request(before, after, requests),
            "upstream_cpu_ms": round((upstream_after - upstream_before) * 1000 / requests, 3),
            "upstream_calls": report.calls_per_request(counts_before, counts_after, requests)}


async def cpu_phase(session: aiohttp.ClientSession, targets: Sequence[Target], upstream: psutil.Process,
                    origin: str, args: argparse.Namespace) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """mode -> target -> its rounds."""
    result: dict[str, dict[str, list[dict[str, Any]]]] = {mode: {t.name: [] for t in targets} for mode in MODES}
    for index in range(args.cpu_rounds):
        for mode, stream in MODES.items():
            for target in rotated(targets, index):
                result[mode][target.name].append(
                    await cpu_round(session, target, stream, upstream, origin, args.clients, args.cpu_requests))
    return result


async def measure(running: Systems, args: argparse.Namespace) -> dict[str, Any]:
    targets, upstream, origin = running.targets, running.upstream, running.origin
    # Idle connections are closed by the client after 2 s, before uvicorn closes them at 5 s: a
    # request sent on a connection the server is closing at that moment fails (Server disconnected).
    connector = aiohttp.TCPConnector(limit=args.clients * 2, keepalive_timeout=CLIENT_KEEPALIVE_S)
    async with aiohttp.ClientSession(connector=connector) as session:
        decisions = await warm_up(session, targets, args)
        rate_limited = await limits_at_work(session, targets, running.redis_url)
        pids = {t.name: t.pids() for t in targets}
        idle = await idle_cpu(targets, args.idle_s)
        latencies = await latency_phase(session, targets, args.rounds, args.requests)
        cpu = await cpu_phase(session, targets, upstream, origin, args)
    replaced = {t.name: len(pids[t.name] - t.pids()) for t in targets}
    return {"decisions": decisions, "idle_cpu_ms_per_s": idle, "latencies": latencies, "cpu": cpu,
            "rate_limited_deployments": rate_limited,
            "requests_retried": {t.name: dict(t.retried) for t in targets if t.retried},
            "processes_replaced": {name: count for name, count in replaced.items() if count}}


# From measurements to results.

def mode_result(latency_rounds: list[dict[str, list[float]]], cpu_rounds: Mapping[str, list[dict[str, Any]]],
                names: Sequence[str]) -> dict[str, Any]:
    latency = {name: report.latency_summary([ms for r in latency_rounds for ms in r[name]]) for name in names}
    added = {name: report.added_latency(latency_rounds, name) for name in names if name != report.DIRECT}
    cpu = {}
    for name in names:
        chosen = report.median_round(cpu_rounds[name])
        calls: dict[str, float] = {}
        for r in cpu_rounds[name]:
            for key, share in r["upstream_calls"].items():
                calls[key] = calls.get(key, 0.0) + share / len(cpu_rounds[name])
        cpu[name] = {**chosen, "upstream_calls": {k: round(v, 4) for k, v in calls.items()},
                     "total_by_round": [r["cpu_ms"]["total"] for r in cpu_rounds[name]]}
    ratios = {}
    for metric, figures in (("cpu", {n: c["cpu_ms"]["total"] for n, c in cpu.items()}),
                            ("added_p50", {n: a["p50_ms"] for n, a in added.items()}),
                            ("added_p99", {n: a["p99_ms"] for n, a in added.items()})):
        against, theirs = report.best_litellm(figures)
        ratios[metric] = {"ratio": report.ratio(figures[report.DRAFTGATE], theirs), "against": against}
    ratios["added_p50"]["by_round"] = [  # same round, same moment of the machine: how steady the ratio is
        report.ratio(ours, theirs) for ours, theirs in zip(added[report.DRAFTGATE]["p50_ms_by_round"],
                                                           added[ratios["added_p50"]["against"]]["p50_ms_by_round"],
                                                           strict=True)]
    return {"latency": latency, "added": added, "cpu": cpu, "ratios": ratios,
            "ratios_by_target": ratios_by_target(cpu, added, names)}


def ratios_by_target(cpu: Mapping[str, Any], added: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Every draftgate target's CPU and added p50 as ratios to LiteLLM's best variant in the run
    (the targets are checked on `draftgate`, every feature on; the others are for reference)."""
    cpu_ms = {name: cpu[name]["cpu_ms"]["total"] for name in names}
    added_p50 = {name: added[name]["p50_ms"] for name in names if name in added}
    (cpu_against, cpu_theirs), (p50_against, p50_theirs) = report.best_litellm(cpu_ms), report.best_litellm(added_p50)
    return {name: {"cpu": report.ratio(cpu_ms[name], cpu_theirs),
                   "added_p50": report.ratio(added_p50[name], p50_theirs),
                   "against": {"cpu": cpu_against, "added_p50": p50_against}}
            for name in names if name.startswith(report.DRAFTGATE)}


def checks(modes: Mapping[str, Mapping[str, Any]]) -> list[report.Check]:
    found = []
    for mode, figures in modes.items():
        cpu = {name: c["cpu_ms"]["total"] for name, c in figures["cpu"].items()}
        added = {name: a["p50_ms"] for name, a in figures["added"].items()}
        found += report.mode_checks(mode, cpu, added)
        found += [report.one_call_check(f"{name}_{mode}", figures["cpu"][name]["upstream_calls"])
                  for name in figures["cpu"] if name != report.DIRECT]
    return found


def parse_settings(pairs: Sequence[str]) -> dict[str, str]:
    """--draftgate-env KEY=VALUE (repeatable): more DRAFTGATE_* variables for draftgate's services."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("DRAFTGATE_"):
            raise SystemExit(f"--draftgate-env wants DRAFTGATE_NAME=value, not {pair!r}")
        settings[key] = value
    return settings


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--litellm", type=Path, required=True, help="the `litellm` executable of its virtualenv")
    parser.add_argument("--litellm-variants", default=DEFAULT_VARIANTS,
                        help="ways to run LiteLLM's proxy, server:workers, comma-separated; the ratios are taken "
                             f"against the best of them per metric (default {DEFAULT_VARIANTS})")
    parser.add_argument("--commit", default="HEAD", help="draftgate's commit to measure, or `worktree`")
    parser.add_argument("--before", default=None, metavar="REV",
                        help=f"also measure this commit with every feature on, as {BEFORE} "
                             "(before and after in one run)")
    parser.add_argument("--draftgate-env", action="append", default=[], metavar="DRAFTGATE_NAME=value")
    parser.add_argument("--no-forced", action="store_true", help="leave out draftgate with the drafter tier forced")
    parser.add_argument("--no-single", action="store_true",
                        help="leave out the reference draftgate with one deployment per tier and no rate limits")
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds")
    parser.add_argument("--requests", type=int, default=150, help="one-client requests per target, mode and round")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients for the CPU rounds")
    parser.add_argument("--cpu-requests", type=int, default=500, help="requests per target, mode and CPU round")
    parser.add_argument("--cpu-rounds", type=int, default=5,
                        help="rounds of CPU readings; the shared machine's load moves one round's figure more "
                             "than its size does, so more rounds rather than longer ones")
    parser.add_argument("--warmup", type=int, default=100, help="one-client requests per target and mode first")
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests, figures not to be kept")
    args = parser.parse_args(argv)
    try:
        args.variants = [report.parse_variant(v) for v in args.litellm_variants.split(",")]
    except ValueError as exc:
        parser.error(str(exc))
    if args.quick:
        args.rounds, args.requests, args.cpu_requests, args.cpu_rounds, args.warmup, args.idle_s = 2, 20, 200, 1, 10, 1
    return args


@dataclass
class Systems:
    """Everything under test, running: the targets, the fake's process and origin (for /counts),
    the features-on draftgate's Redis, and the DRAFTGATE_* settings each draftgate got."""

    targets: list[Target]
    upstream: psutil.Process
    origin: str
    redis_url: str
    settings: dict[str, dict[str, str]]


@contextlib.contextmanager
def systems(args: argparse.Namespace, workdir: Path, commit: str) -> Iterator[Systems]:
    """The fake, draftgate with every feature on (and, for reference, with one deployment per tier
    on another Redis database) and each LiteLLM variant."""
    extra = parse_settings(args.draftgate_env)
    tree = export_tree(commit, workdir / "tree")
    with redis_server(workdir) as redis_url, fake_upstream(module="bench.peers_upstream") as upstream_url, \
            contextlib.ExitStack() as stack:
        settings = {report.DRAFTGATE: {**features_on(upstream_url), **extra}}
        ours = stack.enter_context(draftgate(tree, redis_url, upstream_url, workdir / report.DRAFTGATE,
                                             report.DRAFTGATE, ROUTERS, settings[report.DRAFTGATE]))
        targets = [Target(report.DIRECT, f"{upstream_url}/chat/completions", "fake-drafter"),
                   Target(report.DRAFTGATE, f"{ours.url}/v1/chat/completions", "auto", ours)]
        if not args.no_forced:
            targets.append(Target(FORCED, f"{ours.url}/v1/chat/completions", "drafter", ours))
        if not args.no_single:
            settings[SINGLE] = extra
            single = stack.enter_context(draftgate(tree, redis_db(redis_url, 1), upstream_url, workdir / SINGLE,
                                                   SINGLE, ROUTERS, extra))
            targets.append(Target(SINGLE, f"{single.url}/v1/chat/completions", "auto", single))
        if args.before:
            settings[BEFORE] = settings[report.DRAFTGATE]
            old = export_tree(resolve_commit(args.before), workdir / "tree-before")
            before = stack.enter_context(draftgate(old, redis_db(redis_url, 2), upstream_url, workdir / BEFORE,
                                                   BEFORE, ROUTERS, settings[BEFORE]))
            targets.append(Target(BEFORE, f"{before.url}/v1/chat/completions", "auto", before))
        for server, workers in args.variants:
            name = report.variant(server, workers)
            theirs = stack.enter_context(litellm(args.litellm, upstream_url, workdir / name, workers, server))
            targets.append(Target(name, f"{theirs.url}/v1/chat/completions", theirs.model, theirs))
        yield Systems(targets, child_process("bench.peers_upstream"), upstream_url.removesuffix("/v1"), redis_url,
                      settings)


def document(args: argparse.Namespace, commit: str, running: Systems, measured: Mapping[str, Any],
             load_before: list[float]) -> dict[str, Any]:
    """The results file: what ran, how it was set, the figures, the checks and the verdict."""
    names = [t.name for t in running.targets]
    modes = {mode: mode_result(measured["latencies"][mode], measured["cpu"][mode], names) for mode in MODES}
    found = [*checks(modes), report.features_check(measured["rate_limited_deployments"], FEATURE_DEPLOYMENTS)]
    fake = running.origin + "/v1"
    settings = {name: {key: value.replace(fake, "<the fake>/v1") for key, value in env.items()}
                for name, env in running.settings.items()}
    packages = litellm_version(args.litellm)
    return {
        "draftgate": {"commit": describe(commit), "routers": ROUTERS, "cache": "off (gateway.cache_url null)",
                      "before": resolve_commit(args.before) if args.before else None,
                      "models": {report.DRAFTGATE: "auto", FORCED: "drafter", SINGLE: "auto", BEFORE: "auto"},
                      "settings": settings, "rate_limited_deployments": measured["rate_limited_deployments"]},
        "litellm": {"version": packages["litellm"], "packages": packages,
                    "variants": [report.variant(*v) for v in args.variants],
                    "config": litellm_config("<the fake>/v1"), "env": litellm_env()},
        "load": {"answer_tokens": ANSWER_TOKENS, "messages": MESSAGES, "latency_rounds": args.rounds,
                 "latency_requests_per_round": args.requests, "cpu_clients": args.clients,
                 "cpu_requests_per_round": args.cpu_requests, "cpu_rounds": args.cpu_rounds,
                 "load_generator": "python (aiohttp on uvloop)", "quick": args.quick},
        "cpus": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "routing_decisions": measured["decisions"], "idle_cpu_ms_per_s": measured["idle_cpu_ms_per_s"],
        "processes_replaced_while_measured": measured["processes_replaced"],
        "requests_retried": measured["requests_retried"],
        "modes": modes, "checks": {c.name: c.as_dict() for c in found}, "verdict": report.verdict(found),
    }


def save(result: dict[str, Any], quick: bool) -> Path:
    """bench/results/peers.json and peers.md; a --quick run's figures go to an ignored .tmp file
    instead, never over a full run's."""
    if quick:
        path = RESULTS_DIR / f"{NAME}-quick.json.tmp"
        path.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return path
    path = write_result(NAME, result)
    stored = {**result, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (RESULTS_DIR / f"{NAME}.md").write_text(report.markdown(stored))
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    commit = resolve_commit(args.commit)
    load_before = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="draftgate-peers-"))
    try:
        with systems(args, workdir, commit) as running:
            measured = uvloop.run(measure(running, args))
    except BaseException:
        print(f"peers: failed; the services' logs are kept in {workdir}", flush=True)
        raise
    shutil.rmtree(workdir)
    result = document(args, commit, running, measured, load_before)
    print_summary(result, save(result, args.quick))
    return result


def print_summary(result: Mapping[str, Any], path: Path) -> None:
    print(f"peers: draftgate {result['draftgate']['commit']} vs LiteLLM {result['litellm']['version']}")
    for mode, figures in result["modes"].items():
        cpu, added = figures["cpu"], figures["added"]
        line = ", ".join(f"{name} {cpu[name]['cpu_ms']['total']} CPU ms/req, +{added[name]['p50_ms']} ms p50 "
                         f"(+{added[name]['p99_ms']} p99)" for name in added)
        ratios = ", ".join(f"{metric} {r['ratio']} (vs {r['against']})" for metric, r in figures["ratios"].items())
        print(f"  {mode}: {line}; draftgate/LiteLLM: {ratios}")
        for name, r in figures["ratios_by_target"].items():
            print(f"    {name}/LiteLLM: cpu {r['cpu']}, added p50 {r['added_p50']}")
    if result["processes_replaced_while_measured"]:
        print(f"  WARNING processes replaced while measured: {result['processes_replaced_while_measured']}")
    if result["requests_retried"]:
        print(f"  WARNING requests retried after a dropped connection: {result['requests_retried']}")
    for name, check in result["checks"].items():
        print(f"  {'PASS' if check['passed'] else 'FAIL'} {name}: {check['detail']}")
    print(f"peers: {result['verdict']} -> {path}")


if __name__ == "__main__":
    main()
