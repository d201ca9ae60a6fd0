"""Progressive streaming (issue #16): time to the first token of a streamed draft, the total latency
of a draft escalated after a prefix was shown, and the CPU either mode costs, in one run.

Fake upstreams stream one token every 20 ms, each in its own process (bench/progressive_upstream.py:
the drafter's first token after 50 ms, the heavyweight's after 300 ms). Four draftgate stacks run
side by side, each a gateway, a router and its own Redis: buffered and progressive, each with
speculation on (the default) and off. Every request goes through the official `openai` client,
streamed; the requests of parts 1 and 2 are shuffled together and sent by a few concurrent clients,
so a change in the machine's load falls on every mode alike.

1. TTFT (to the first content token) of accepted drafts of 10, 40 and 200 tokens: the drafter called
   directly, draftgate buffered, draftgate progressive. Target (PASS/FAIL): progressive p50 <= direct
   p50 + early_exit_tokens x 20 ms + 50 ms.
2. A draft that turns uncertain after the early-exit region (20 confident tokens, 10 elevated, then
   critical): time to the first and to the last token, progressive continued (speculation on and
   off) against buffered serial escalation (and buffered speculative escalation, for context).
   Target (PASS/FAIL): each continued total p50 <= the serial escalation's total p50.
3. Gateway + router CPU ms per request (psutil, user + system) for accepted 40- and 200-token drafts,
   buffered against progressive, and from the two lengths the CPU each further drafted token costs.

Every answer is checked (text, decision); a run in which any answer was wrong or failed is INVALID
whatever its figures.

`python -m bench.progressive [--repetitions 20] [--clients 6]`; results in
bench/results/progressive.json and a table in bench/results/progressive.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import psutil
import uvloop

from bench.harness import RESULTS_DIR, fake_upstream, percentile, redis_server, tree_usage, write_result
from bench.progressive_upstream import (
    ANSWER_TOKENS,
    DRAFTER,
    HEAVYWEIGHT,
    LENGTHS,
    TOKEN_S,
    TURN_CONFIDENT,
    TURN_ELEVATED,
    TURNS,
    continuation_tokens,
    drafted,
    marker,
)
from bench.soak_report import Check
from shared.config import BusConfig, RoutingConfig
from tests.support import REPO, Service, free_port

NAME = "progressive"
SEED = 16
EARLY_EXIT_TOKENS = RoutingConfig().early_exit_tokens
HOLDBACK_TOKENS = RoutingConfig().stream_holdback_tokens
COALESCE_MS = BusConfig().reply_coalesce_ms  # the router's reply writes, at most one per this
TTFT_SLACK_MS = 50.0
CPU_REQUESTS = {40: 96, 200: 24}  # per draft length and mode, in CPU_ROUNDS alternating rounds
CPU_ROUNDS = 2
CPU_CLIENTS = 8

DIRECT = "direct"
BUFFERED, BUFFERED_SERIAL = "buffered", "buffered_serial"
PROGRESSIVE, PROGRESSIVE_SERIAL = "progressive", "progressive_no_speculation"
SPECULATION_OFF = {"DRAFTGATE_ROUTING_SPECULATION_THRESHOLD": "null"}
STACKS: dict[str, dict[str, str]] = {
    BUFFERED: {"DRAFTGATE_ROUTING_STREAM_MODE": "buffered"},
    BUFFERED_SERIAL: {"DRAFTGATE_ROUTING_STREAM_MODE": "buffered", **SPECULATION_OFF},
    PROGRESSIVE: {"DRAFTGATE_ROUTING_STREAM_MODE": "progressive"},
    PROGRESSIVE_SERIAL: {"DRAFTGATE_ROUTING_STREAM_MODE": "progressive", **SPECULATION_OFF},
}
TTFT_MODES = (DIRECT, BUFFERED, PROGRESSIVE)
SEAM_MODES = (PROGRESSIVE, PROGRESSIVE_SERIAL, BUFFERED_SERIAL, BUFFERED)
SEAM = "seam"
CONTINUED_MODES = (PROGRESSIVE, PROGRESSIVE_SERIAL)
_WORD = re.compile(r" ([dh])(\d+)")


# Pure: outcomes, statistics, checks and the table.

@dataclass(frozen=True)
class Job:
    """One request to send: to which mode, and which scenario (a draft length, or the seam)."""

    mode: str
    scenario: str


@dataclass
class Outcome:
    """What the client saw of one streamed request; times in ms from just before the call."""

    mode: str
    scenario: str
    ttft_ms: float | None = None
    total_ms: float | None = None
    text: str = ""
    decision: str | None = None  # X-Routing-Decision
    speculation: str | None = None  # X-Speculation
    final: dict[str, Any] | None = None  # the last chunk's "draftgate" field
    error: str | None = None
    chunks: int = 0


def scenario_of(length: int) -> str:
    return f"len{length}"


def prompt_for(scenario: str) -> str:
    """The prompt whose marker makes the fake drafter answer as the scenario needs."""
    marked = TURNS if scenario == SEAM else marker(int(scenario.removeprefix("len")))
    return f"{marked} Tell me about it."


def jobs(repetitions: int, seed: int = SEED) -> list[Job]:
    """Parts 1 and 2, `repetitions` of each (mode, scenario), in one shuffled order."""
    wanted = [Job(mode, scenario_of(length)) for length in LENGTHS for mode in TTFT_MODES]
    wanted += [Job(mode, SEAM) for mode in SEAM_MODES]
    order = wanted * repetitions
    random.Random(seed).shuffle(order)
    return order


def stats(values: Sequence[float], unit: str = "ms") -> dict[str, float]:
    """p50, p90 and mean (keys named for `unit`), with the count; just the count when it is 0."""
    if not values:
        return {"n": 0}
    return {"n": len(values), f"p50_{unit}": round(percentile(list(values), 50), 1),
            f"p90_{unit}": round(percentile(list(values), 90), 1), f"mean_{unit}": round(sum(values) / len(values), 1)}


def seam_words(text: str) -> tuple[int, bool]:
    """How many drafter words start `text`, and whether the text is exactly those drafter words
    (d0..d{k-1}) followed by the rest of the heavyweight's answer (h{k}..): no word lost, none twice."""
    found = _WORD.findall(text)
    if "".join(f" {stem}{number}" for stem, number in found) != text:
        return 0, False
    shown = 0
    while shown < len(found) and found[shown][0] == "d":
        shown += 1
    return shown, text == "".join(drafted(shown)) + "".join(continuation_tokens(shown))


def expected_problem(outcome: Outcome) -> str | None:
    """Why this answer is not what its mode and scenario should give, or None when it is."""
    if outcome.error:
        return outcome.error
    if outcome.scenario != SEAM:
        return _accepted_problem(outcome)
    if outcome.mode in CONTINUED_MODES:
        return _continued_problem(outcome)
    return _escalated_problem(outcome)


def _accepted_problem(outcome: Outcome) -> str | None:
    if outcome.text != "".join(drafted(int(outcome.scenario.removeprefix("len")))):
        return "text is not the draft"
    if outcome.mode == DIRECT:
        return None
    if outcome.mode == PROGRESSIVE:
        if outcome.decision not in ("accept", "progressive"):
            return f"header decision {outcome.decision}"
        return None if (outcome.final or {}).get("decision") == "accept" else f"final {outcome.final}"
    if outcome.decision != "accept":
        return f"header decision {outcome.decision}"
    return None if outcome.final is None else "a final field in buffered mode"


def _continued_problem(outcome: Outcome) -> str | None:
    shown, seamless = seam_words(outcome.text)
    final = outcome.final or {}
    if final.get("decision") != "continued":
        return f"final {outcome.final}"
    if not seamless or shown == 0:
        return f"text at the seam: {outcome.text[:80]!r}..."
    if final.get("seam_tokens") != shown:
        return f"seam_tokens {final.get('seam_tokens')} but {shown} drafter words shown"
    return None if outcome.decision == "progressive" else f"header decision {outcome.decision}"


def _escalated_problem(outcome: Outcome) -> str | None:
    if outcome.text != "".join(continuation_tokens(0)):
        return "text is not the heavyweight's whole answer"
    if outcome.decision != "escalate":
        return f"header decision {outcome.decision}"
    return None if outcome.final is None else "a final field in buffered mode"


def figures(outcomes: Iterable[Outcome]) -> dict[str, dict[str, dict[str, Any]]]:
    """TTFT and total per scenario and mode, over the answers that came out as expected, with the
    header decisions and the final fields' (decision, speculation) pairs seen."""
    grouped: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in outcomes:
        grouped.setdefault((outcome.scenario, outcome.mode), []).append(outcome)
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for (scenario, mode), group in sorted(grouped.items()):
        good = [o for o in group if expected_problem(o) is None]
        finals = Counter(f"{o.final.get('decision')}/{o.final.get('speculation')}" for o in group if o.final)
        found.setdefault(scenario, {})[mode] = {
            "ttft": stats([o.ttft_ms for o in good if o.ttft_ms is not None]),
            "total": stats([o.total_ms for o in good if o.total_ms is not None]),
            "requests": len(group), "unexpected": len(group) - len(good),
            "headers": dict(sorted(Counter(f"{o.decision}/{o.speculation}" for o in group).items())),
            "finals": dict(sorted(finals.items())),
            "seam_tokens": stats([float(o.final["seam_tokens"]) for o in good
                                  if o.final and isinstance(o.final.get("seam_tokens"), int)], unit="tokens"),
        }
    return found


def problems(outcomes: Iterable[Outcome], limit: int = 10) -> dict[str, Any]:
    """How many answers were not as expected, per reason, with a few examples."""
    reasons: Counter[str] = Counter()
    for outcome in outcomes:
        problem = expected_problem(outcome)
        if problem is not None:
            reasons[f"{outcome.mode}/{outcome.scenario}: {problem}"] += 1
    return {"count": sum(reasons.values()), "reasons": dict(reasons.most_common(limit))}


def ttft_limit_ms(direct_p50_ms: float, early_exit_tokens: int = EARLY_EXIT_TOKENS, token_s: float = TOKEN_S,
                  slack_ms: float = TTFT_SLACK_MS) -> float:
    """The issue's bound: the drafter's own TTFT, plus the early-exit region's tokens, plus 50 ms."""
    return direct_p50_ms + early_exit_tokens * token_s * 1000 + slack_ms


def ttft_check(length: int, direct_p50_ms: float, progressive_p50_ms: float) -> Check:
    limit = ttft_limit_ms(direct_p50_ms)
    return Check(f"ttft_{scenario_of(length)}", progressive_p50_ms <= limit,
                 f"{length} tokens: progressive TTFT p50 {progressive_p50_ms:g} ms, at most {limit:g} "
                 f"(direct {direct_p50_ms:g} + {EARLY_EXIT_TOKENS} x {TOKEN_S * 1000:g} + {TTFT_SLACK_MS:g})")


def seam_check(mode: str, continued_p50_ms: float, serial_p50_ms: float) -> Check:
    return Check(f"seam_total_{mode}", continued_p50_ms <= serial_p50_ms,
                 f"{mode}: continued total p50 {continued_p50_ms:g} ms, at most the serial escalation's "
                 f"{serial_p50_ms:g}")


def p50(found: Mapping[str, Mapping[str, Any]], mode: str, what: str) -> float | None:
    return found.get(mode, {}).get(what, {}).get("p50_ms")


def checks_of(found: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[Check]:
    """The targets, each one failed when a figure it needs is missing (no answer came out right)."""
    checks = []
    for length in LENGTHS:
        by_mode = found.get(scenario_of(length), {})
        direct, progressive = p50(by_mode, DIRECT, "ttft"), p50(by_mode, PROGRESSIVE, "ttft")
        if direct is None or progressive is None:
            checks.append(Check(f"ttft_{scenario_of(length)}", False, f"{length} tokens: no figure"))
        else:
            checks.append(ttft_check(length, direct, progressive))
    seam = found.get(SEAM, {})
    serial = p50(seam, BUFFERED_SERIAL, "total")
    for mode in CONTINUED_MODES:
        continued = p50(seam, mode, "total")
        if continued is None or serial is None:
            checks.append(Check(f"seam_total_{mode}", False, f"{mode}: no figure"))
        else:
            checks.append(seam_check(mode, continued, serial))
    return checks


def verdict(checks: Iterable[Check], unexpected: int) -> str:
    """PASS when every target holds; INVALID when any answer came out wrong (the figures leave them
    out, so they would flatter), whatever the targets say; else FAIL."""
    if unexpected:
        return "INVALID"
    return "PASS" if all(check.passed for check in checks) else "FAIL"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def ttft_rows(found: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Part 1 per draft length: each mode's TTFT, buffered over progressive, and progressive's margin."""
    rows = []
    for length in LENGTHS:
        by_mode = found.get(scenario_of(length), {})
        direct, buffered, progressive = (p50(by_mode, mode, "ttft") for mode in TTFT_MODES)
        rows.append({"tokens": length, **{mode: by_mode.get(mode, {}).get("ttft", {}) for mode in TTFT_MODES},
                     "buffered_over_progressive": ratio(buffered, progressive),
                     "progressive_over_direct": ratio(progressive, direct),
                     "progressive_minus_direct_ms": None if direct is None or progressive is None
                     else round(progressive - direct, 1),
                     "limit_ms": None if direct is None else round(ttft_limit_ms(direct), 1)})
    return rows


def seam_rows(found: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Part 2 per mode: TTFT and total, and the total over the serial escalation's."""
    seam = found.get(SEAM, {})
    serial = p50(seam, BUFFERED_SERIAL, "total")
    return [{"mode": mode, "ttft": seam.get(mode, {}).get("ttft", {}), "total": seam.get(mode, {}).get("total", {}),
             "total_over_serial": ratio(p50(seam, mode, "total"), serial),
             "finals": seam.get(mode, {}).get("finals", {}), "headers": seam.get(mode, {}).get("headers", {}),
             "seam_tokens": seam.get(mode, {}).get("seam_tokens", {})} for mode in SEAM_MODES]


def cpu_per_request(start: Mapping[str, float], end: Mapping[str, float], requests: int) -> dict[str, float]:
    """CPU ms per request of each process between two readings of its CPU seconds, and their sum."""
    per = {name: round((end[name] - start[name]) * 1000 / max(requests, 1), 3) for name in start}
    return {**per, "gateway+router": round(sum(per.values()), 3)}


def per_token(by_length: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    """CPU ms each further drafted token costs, per process: the slope between the shortest and the
    longest draft's CPU per request (what a request costs whatever its length drops out)."""
    short, long = min(by_length), max(by_length)
    if short == long:
        return {}
    return {name: round((by_length[long][name] - by_length[short][name]) / (long - short), 4)
            for name in by_length[short]}


def cpu_figures(spent: Mapping[int, Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
    """Part 3: per draft length, each mode's CPU per request and progressive over buffered; per mode,
    the CPU per further token."""
    lengths = sorted(spent)
    return {
        "requests": {str(length): CPU_REQUESTS.get(length) for length in lengths}, "clients": CPU_CLIENTS,
        "ms_per_request": {str(length): dict(spent[length]) for length in lengths},
        "progressive_over_buffered": {str(length): ratio(spent[length][PROGRESSIVE]["gateway+router"],
                                                         spent[length][BUFFERED]["gateway+router"])
                                      for length in lengths},
        "ms_per_token": {mode: slope for mode in (BUFFERED, PROGRESSIVE)
                         if (slope := per_token({length: spent[length][mode] for length in lengths}))},
    }


SEAM_LABELS = {PROGRESSIVE: "progressive, continued (speculation on)",
               PROGRESSIVE_SERIAL: "progressive, continued (speculation off)",
               BUFFERED_SERIAL: "buffered, serial escalation (speculation off)",
               BUFFERED: "buffered, speculative escalation"}


def _pair(figure: Mapping[str, Any]) -> str:
    if not figure.get("n"):
        return "-"
    return f"{figure['p50_ms']:g} / {figure['p90_ms']:g}"


def _num(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:g}{suffix}"


def table(result: Mapping[str, Any]) -> str:
    """The results as Markdown: one table per part, then the checks and the verdict."""
    config = result["config"]
    lines = [f"# progressive streaming (issue #16), recorded {result['recorded_at']} ({result.get('code', '?')})", "",
             f"Fake upstreams at {config['token_ms']:g} ms per token (drafter's first token after "
             f"{config['drafter_ttft_ms']:g} ms, heavyweight's after {config['heavyweight_ttft_ms']:g} ms); "
             f"early_exit_tokens {config['early_exit_tokens']}, stream_holdback_tokens {config['holdback_tokens']}, "
             f"bus.reply_coalesce_ms {_num(config.get('reply_coalesce_ms'))}; "
             f"{config['repetitions']} repetitions of each, {config['clients']} concurrent clients; load average "
             f"{result['load']['before']} before, {result['load']['after']} after ({result['load']['cpus']} CPUs).",
             "", "## 1. Time to first token, accepted streamed drafts (ms, p50 / p90)", "",
             "| draft tokens | drafter direct | buffered | progressive | buffered / progressive | "
             "progressive - direct | target (progressive p50 <=) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["ttft"]:
        lines.append(f"| {row['tokens']} | {_pair(row[DIRECT])} | {_pair(row[BUFFERED])} | {_pair(row[PROGRESSIVE])} "
                     f"| {_num(row['buffered_over_progressive'], 'x')} | {_num(row['progressive_minus_direct_ms'])} "
                     f"| {_num(row['limit_ms'])} |")
    lines += ["", "## 2. A draft that turns uncertain after the early-exit region (ms, p50 / p90)", "",
              f"The draft: {TURN_CONFIDENT} confident tokens, {TURN_ELEVATED} elevated, then critical (the window "
              f"mean crosses the threshold at token {TURN_CONFIDENT + TURN_ELEVATED + 5}). The heavyweight's answer "
              f"is {config['heavyweight_answer_tokens']} tokens; continuing after k shown tokens it writes the "
              f"remaining {config['heavyweight_answer_tokens']} - k.", "",
              "| mode | first token | last token | total / serial | drafter tokens shown (p50) "
              "| final field (decision/speculation) |",
              "| --- | ---: | ---: | ---: | ---: | --- |"]
    for row in result["seam"]:
        finals = ", ".join(f"{k} x{v}" for k, v in row["finals"].items()) or "-"
        lines.append(f"| {SEAM_LABELS[row['mode']]} | {_pair(row['ttft'])} | {_pair(row['total'])} "
                     f"| {_num(row['total_over_serial'], 'x')} | {_num(row['seam_tokens'].get('p50_tokens'))} "
                     f"| {finals} |")
    cpu = result["cpu"]
    lines += ["", f"## 3. CPU ms per request, accepted drafts ({cpu['clients']} clients)", "",
              "| draft tokens (requests per mode) | mode | gateway | router | gateway + router "
              "| progressive / buffered |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for length, by_mode in cpu["ms_per_request"].items():
        for mode in (BUFFERED, PROGRESSIVE):
            spent = by_mode[mode]
            against = _num(cpu["progressive_over_buffered"][length], "x") if mode == PROGRESSIVE else ""
            lines.append(f"| {length} ({cpu['requests'][length]}) | {mode} | {spent['gateway']:g} "
                         f"| {spent['router']:g} | {spent['gateway+router']:g} | {against} |")
    for mode, slope in cpu["ms_per_token"].items():
        lines.append(f"| each further token | {mode} | {slope['gateway']:g} | {slope['router']:g} "
                     f"| {slope['gateway+router']:g} | |")
    lines += ["", "## Checks", ""]
    lines += [f"- {'PASS' if check['passed'] else 'FAIL'}: {check['detail']}" for check in result["checks"].values()]
    lines.append(f"- answers not as expected: {result['unexpected']['count']} "
                 f"{result['unexpected']['reasons'] or ''}".rstrip())
    lines += ["", f"**{result['verdict']}**", ""]
    return "\n".join(lines)


def judge(outcomes: Sequence[Outcome], cpu: Mapping[int, Mapping[str, Mapping[str, float]]], repetitions: int,
          concurrency: int) -> dict[str, Any]:
    """The figures, targets and verdict of what the clients saw and the services spent."""
    found = figures(outcomes)
    checks = checks_of(found)
    unexpected = problems(outcomes)
    return {
        "config": {"token_ms": TOKEN_S * 1000, "drafter_ttft_ms": DRAFTER["ttft_s"] * 1000,
                   "heavyweight_ttft_ms": HEAVYWEIGHT["ttft_s"] * 1000, "heavyweight_answer_tokens": ANSWER_TOKENS,
                   "early_exit_tokens": EARLY_EXIT_TOKENS, "holdback_tokens": HOLDBACK_TOKENS,
                   "reply_coalesce_ms": COALESCE_MS,
                   "repetitions": repetitions, "clients": concurrency, "stacks": STACKS},
        "ttft": ttft_rows(found),
        "seam": seam_rows(found),
        "cpu": cpu_figures(cpu),
        "by_scenario": found,
        "unexpected": unexpected,
        "checks": {check.name: check.as_dict() for check in checks},
        "verdict": verdict(checks, unexpected["count"]),
    }


# I/O: the stacks, the requests, the CPU readings.

@dataclass(frozen=True)
class ModeStack:
    """One draftgate deployment (gateway, router, its own Redis) and its service processes."""

    gateway: str
    processes: dict[str, psutil.Process]


@contextlib.contextmanager
def mode_stack(drafter_url: str, heavy_url: str, workdir: Path, name: str, env: Mapping[str, str]
               ) -> Iterator[ModeStack]:
    """A router and a gateway as real processes with their own Redis, so no stack's router can
    take another's requests."""
    logs = workdir / name
    logs.mkdir(parents=True, exist_ok=True)
    with redis_server(logs) as redis_url:
        common = {"DRAFTGATE_REDIS_URL": redis_url, "DRAFTGATE_DRAFTER_BASE_URL": drafter_url,
                  "DRAFTGATE_DRAFTER_MODEL": "fake-drafter", "DRAFTGATE_HEAVYWEIGHT_BASE_URL": heavy_url,
                  "DRAFTGATE_HEAVYWEIGHT_MODEL": "fake-heavy", "DRAFTGATE_GATEWAY_CACHE_URL": "null",
                  "DRAFTGATE_LOGGING_LEVEL": "warning", **env}
        services: list[Service] = []
        try:
            port = free_port()
            services.append(Service("services.router", {**common, "DRAFTGATE_ROUTER_PORT": str(port)}, port,
                                    logs / "router.log").start())
            port = free_port()
            services.append(Service("services.gateway", {**common, "DRAFTGATE_GATEWAY_PORT": str(port)}, port,
                                    logs / "gateway.log").start("/ready"))
            processes = {role: psutil.Process(service.proc.pid) for role, service in zip(("router", "gateway"),
                                                                                          services, strict=True)
                         if service.proc is not None}
            yield ModeStack(gateway=services[-1].url, processes=processes)
        finally:
            for service in reversed(services):
                service.stop()


def final_field(chunk: Any) -> dict[str, Any] | None:
    """The extra top-level "draftgate" field, which the openai client keeps in model_extra."""
    extra = chunk.model_extra or {}
    value = extra.get("draftgate")
    return value if isinstance(value, dict) else None


async def ask(client: openai.AsyncOpenAI, model: str, job: Job) -> Outcome:
    """One streamed request as an application makes it; TTFT is the first chunk with content."""
    outcome = Outcome(job.mode, job.scenario)
    parts: list[str] = []
    started = time.perf_counter()
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, stream=True, messages=[{"role": "user", "content": prompt_for(job.scenario)}])
        outcome.decision = raw.headers.get("X-Routing-Decision")
        outcome.speculation = raw.headers.get("X-Speculation")
        async for chunk in raw.parse():
            outcome.chunks += 1
            content = chunk.choices[0].delta.content if chunk.choices else None
            if content:
                if outcome.ttft_ms is None:
                    outcome.ttft_ms = (time.perf_counter() - started) * 1000
                parts.append(content)
            outcome.final = final_field(chunk) or outcome.final
    except openai.APIError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"[:200]
    outcome.total_ms = (time.perf_counter() - started) * 1000
    outcome.text = "".join(parts)
    return outcome


@dataclass
class Clients:
    """An openai client per mode: the gateways' ("auto"), and the drafter's own ("fake-drafter")."""

    by_mode: dict[str, tuple[openai.AsyncOpenAI, str]]

    async def send(self, job: Job) -> Outcome:
        client, model = self.by_mode[job.mode]
        return await ask(client, model, job)

    async def close(self) -> None:
        for client, _model in self.by_mode.values():
            await client.close()


def make_clients(drafter_url: str, stacks: Mapping[str, ModeStack]) -> Clients:
    def client(base_url: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60)

    by_mode = {DIRECT: (client(drafter_url), "fake-drafter")}
    by_mode |= {mode: (client(f"{stack.gateway}/v1"), "auto") for mode, stack in stacks.items()}
    return Clients(by_mode)


async def run_jobs(clients: Clients, order: Sequence[Job], concurrency: int) -> list[Outcome]:
    """`concurrency` clients, each sending the next job when its last one ended."""
    pending = list(reversed(order))
    outcomes: list[Outcome] = []

    async def worker() -> None:
        while pending:
            outcomes.append(await clients.send(pending.pop()))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


def cpu_seconds(stack: ModeStack) -> dict[str, float]:
    return {role: tree_usage(process).cpu_s for role, process in stack.processes.items()}


async def cpu_phase(clients: Clients, stacks: Mapping[str, ModeStack], requests: Mapping[int, int], rounds: int,
                    concurrency: int) -> dict[int, dict[str, dict[str, float]]]:
    """Accepted drafts of each length to buffered and progressive in alternating rounds; each mode's
    service CPU is read around its own rounds only."""
    found: dict[int, dict[str, dict[str, float]]] = {}
    for length, count in requests.items():
        spent: dict[str, Counter[str]] = {mode: Counter() for mode in (BUFFERED, PROGRESSIVE)}
        per_round = count // rounds
        for _ in range(rounds):
            for mode in spent:
                before = cpu_seconds(stacks[mode])
                outcomes = await run_jobs(clients, [Job(mode, scenario_of(length))] * per_round, concurrency)
                after = cpu_seconds(stacks[mode])
                if any(expected_problem(o) for o in outcomes):
                    raise RuntimeError(f"{mode}: unexpected answers in the CPU phase: {problems(outcomes)}")
                spent[mode].update({role: after[role] - before[role] for role in after})
        found[length] = {mode: cpu_per_request({role: 0.0 for role in cpu}, dict(cpu), per_round * rounds)
                         for mode, cpu in spent.items()}
    return found


async def measure(drafter_url: str, stacks: Mapping[str, ModeStack], repetitions: int,
                  concurrency: int) -> dict[str, Any]:
    clients = make_clients(drafter_url, stacks)
    try:
        warmup = jobs(1)
        await run_jobs(clients, warmup, concurrency)  # connections, first-call costs; not counted
        outcomes = await run_jobs(clients, jobs(repetitions), concurrency)
        cpu = await cpu_phase(clients, stacks, CPU_REQUESTS, CPU_ROUNDS, CPU_CLIENTS)
    finally:
        await clients.close()
    return {"outcomes": outcomes, "cpu": cpu}


def code_version() -> str:
    """The commit measured, "-dirty" when the working tree differs from it."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def run(repetitions: int, concurrency: int) -> dict[str, Any]:
    load_before = load_average()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="draftgate-progressive-") as tmp, contextlib.ExitStack() as running:
        workdir = Path(tmp)
        drafter_url = running.enter_context(fake_upstream("drafter", module="bench.progressive_upstream"))
        heavy_url = running.enter_context(fake_upstream("heavyweight", module="bench.progressive_upstream"))
        stacks = {mode: running.enter_context(mode_stack(drafter_url, heavy_url, workdir, mode, env))
                  for mode, env in STACKS.items()}
        measured = uvloop.run(measure(drafter_url, stacks, repetitions, concurrency))
    return {"recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "code": code_version(),
            "load": {"before": load_before, "after": load_average(), "cpus": psutil.cpu_count()},
            "seconds": round(time.monotonic() - started, 1),
            **judge(measured["outcomes"], measured["cpu"], repetitions, concurrency)}


def summary(result: Mapping[str, Any], path: Path) -> str:
    ttft = "; ".join(f"{row['tokens']} tokens {_num(row[DIRECT].get('p50_ms'))} direct, "
                     f"{_num(row[BUFFERED].get('p50_ms'))} buffered, {_num(row[PROGRESSIVE].get('p50_ms'))} progressive"
                     for row in result["ttft"])
    seam = ", ".join(f"{row['mode']} {_num(row['total'].get('p50_ms'))}" for row in result["seam"])
    cpu = "; ".join(f"{length} tokens buffered {by_mode[BUFFERED]['gateway+router']:g}, progressive "
                    f"{by_mode[PROGRESSIVE]['gateway+router']:g}"
                    for length, by_mode in result["cpu"]["ms_per_request"].items())
    return (f"progressive: TTFT p50 ms: {ttft}. Seam total p50 ms: {seam}. Gateway+router CPU ms per request: {cpu}. "
            f"{result['unexpected']['count']} unexpected answers; {result['verdict']} -> {path}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.progressive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=20, help="requests per mode and scenario")
    parser.add_argument("--clients", type=int, default=6, help="concurrent clients sending parts 1 and 2")
    args = parser.parse_args([] if argv is None else argv)
    result = run(args.repetitions, args.clients)
    path = write_result(NAME, result)
    (RESULTS_DIR / f"{NAME}.md").write_text(table(result))
    print(summary(result, path))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
