"""The `collect` step: run the prompt set through the tiers and record every answer token by token.

The sweep and the fit learn only from what is recorded here, so it records everything the router
could ever look at: each drafted token with its top-k alternatives' log-probs (k up to 20, more than
the router uses, so any smaller k can be replayed), the text, usage, time to first token and latency.
Calls go through the router's own upstream code (stream.py). The output is append-only and flushed
per record, so Ctrl-C loses nothing finished and the next run picks up where this one stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from services.router.calibration.dataset import DATASET, Item, load_items
from services.router.calibration.interrupt import run_interruptibly
from services.router.calibration.jsonl import Appender
from services.router.calibration.traces import DEFAULT_TRACES, TIERS, Trace, Usage, done_keys
from shared.config import UpstreamConfig, load_config

if TYPE_CHECKING:  # the openai client's modules load in run(), so `--help` stays quick
    from services.router.calibration.stream import Answer
    from services.router.upstream import Tier

HELP = "run the prompt set through the drafter (and heavyweight), recording each token's top-k log-probs"
DESCRIPTION = """\
Send every prompt of the prompt set (--prompts; the shipped one by default) to the drafter configured in
--config, streamed with temperature 0 and up to 20 alternatives per token (top_logprobs, --top-k), and
record the answer token by token: each token's log-prob and its alternatives', the text, the token usage,
the time to the first token and the whole latency. With --tiers drafter,heavyweight the heavyweight
answers every prompt too, so `grade` can tell whether escalating would have helped and the sweep can price
it. The tiers are reached through the router's own upstream code: the calibration sees what the router sees.

One JSON line per prompt and tier is appended to --out (.data/calibration/traces.jsonl) and flushed at
once. Stop it any time (Ctrl-C): the next run skips what is recorded and does the rest; a prompt that
failed is recorded with its error and tried again by the next run. Rate limits (429), server errors (5xx)
and dropped connections are retried with jittered exponential backoff, honouring Retry-After. An upstream
that refuses top_logprobs=k stops the run and says so: rerun with a smaller --top-k.

Exit status: 0 when every prompt is recorded, 1 when some failed (run again to retry them), 2 when the
upstream refused the requests, 130 when interrupted."""

DEFAULT_TOP_K = 20
DEFAULT_CONCURRENCY = 2
DEFAULT_RETRIES = 4
DEFAULT_BACKOFF_S = 1.0


@dataclass(frozen=True)
class Job:
    item: Item
    tier: str


@dataclass
class Tally:
    recorded: Counter[str] = field(default_factory=Counter)  # tier -> answers recorded
    tokens: Counter[str] = field(default_factory=Counter)  # tier -> completion tokens (usage, else traced)
    seconds: Counter[str] = field(default_factory=Counter)  # tier -> summed call latency
    failures: list[str] = field(default_factory=list)
    traced: int = 0  # drafted tokens with log-probs
    narrow: int = 0  # ...of which fewer alternatives came than were asked for
    untraced: list[str] = field(default_factory=list)  # drafts that came with text but no log-probs

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def written(self) -> int:
        return sum(self.recorded.values()) + self.failed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompts", type=Path, default=DATASET,
                        help="the prompt set, JSON lines (default: the shipped services/router/calibration/data/"
                             "prompts.jsonl)")
    parser.add_argument("--config", type=Path, default=Path("config.yaml"),
                        help="config YAML naming the tiers (default: config.yaml; DRAFTGATE_* variables override "
                             "it as they do for the router)")
    parser.add_argument("--out", type=Path, default=DEFAULT_TRACES,
                        help=f"traces file, appended to (default: {DEFAULT_TRACES})")
    parser.add_argument("--tiers", type=_tiers, default=("drafter",),
                        help="comma-separated tiers to run: drafter, heavyweight (default: drafter)")
    parser.add_argument("--split", choices=("train", "test", "all"), default="all",
                        help="which split of the prompt set (default: all)")
    parser.add_argument("--limit", type=_positive, default=None, help="only the first N prompts (after --split)")
    parser.add_argument("--top-k", type=_top_k, default=DEFAULT_TOP_K,
                        help=f"alternatives per drafted token, 1-20 (default {DEFAULT_TOP_K}; lower it if the "
                             "upstream refuses)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    parser.add_argument("--concurrency", type=_positive, default=DEFAULT_CONCURRENCY,
                        help=f"calls in flight at once (default {DEFAULT_CONCURRENCY})")
    parser.add_argument("--retries", type=_non_negative, default=DEFAULT_RETRIES,
                        help=f"retries of a call failing with 429, 5xx or a dropped connection (default "
                             f"{DEFAULT_RETRIES})")
    parser.add_argument("--backoff-s", type=float, default=DEFAULT_BACKOFF_S,
                        help=f"first retry's wait, doubled per retry and jittered (default {DEFAULT_BACKOFF_S})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from services.router.calibration.retry import Refused

    items = select(load_items(args.prompts), args.split, args.limit)
    config = load_config(args.config, os.environ)
    done = done_keys(args.out)
    jobs = [Job(item, tier) for item in items for tier in args.tiers if (item.id, tier) not in done]
    skipped = len(items) * len(args.tiers) - len(jobs)
    print(f"{len(items)} prompts x {', '.join(args.tiers)}: {skipped} already recorded, {len(jobs)} to go "
          f"-> {args.out}")
    tiers = {name: getattr(config, name) for name in args.tiers}
    tally = Tally()
    try:
        run_interruptibly(collect(jobs, tiers, args, tally))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {tally.written} records written to {args.out}; "
              "run the same command again to do the rest", file=sys.stderr)
        return 130
    except Refused as exc:
        print(f"collect: {exc}", file=sys.stderr)
        return 2
    _summary(tally, args.top_k)
    return 1 if tally.failed else 0


def select(items: Sequence[Item], split: str, limit: int | None) -> list[Item]:
    chosen = [item for item in items if split == "all" or item.split == split]
    return chosen[:limit] if limit is not None else chosen


async def collect(jobs: Sequence[Job], tier_configs: dict[str, UpstreamConfig], args: argparse.Namespace,
                  tally: Tally) -> None:
    """Run the jobs with at most --concurrency in flight, appending each record as it completes."""
    from tqdm import tqdm

    from services.router.calibration.retry import Refused
    from services.router.upstream import create_tier

    # collect retries a call itself (--retries, counted in each record's attempts): the tier's own
    # retries across its deployments would call the upstream again unseen.
    tiers = {name: create_tier(name, dataclasses.replace(cfg, retries=0), os.environ)
             for name, cfg in tier_configs.items()}
    rng = random.Random()
    queue: Iterator[Job] = iter(jobs)
    try:
        with Appender(args.out) as out, tqdm(total=len(jobs), desc="collect", unit="call", disable=args.quiet,
                                             file=sys.stderr) as bar:
            async def worker() -> None:
                for job in queue:  # one shared iterator: each job is taken by one worker
                    trace = await call(job, tiers[job.tier], args, rng)
                    out.append(trace.to_json())
                    _count(tally, trace)
                    bar.update(1)
                    bar.set_postfix(failed=tally.failed, refresh=False)

            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(min(args.concurrency, len(jobs))):
                        group.create_task(worker())
            except* Refused as refused:
                raise refused.exceptions[0] from None
    finally:
        for tier in tiers.values():
            await tier.client.close()


async def call(job: Job, tier: Tier, args: argparse.Namespace, rng: random.Random) -> Trace:
    """One prompt through one tier, retried as retry.py says; a Trace, with the error if it failed."""
    from services.router.calibration.retry import GaveUp, with_retries
    from services.router.calibration.stream import stream_answer

    item = job.item
    body = {"messages": [dict(m) for m in item.messages], "max_tokens": item.max_tokens,
            "temperature": args.temperature}
    top_k = args.top_k if job.tier == "drafter" else None  # the heavyweight's own confidence is not used
    base = {"id": item.id, "tier": job.tier, "model": tier.model, "category": item.category, "split": item.split}
    try:
        answer, attempts = await with_retries(lambda: stream_answer(tier, body, top_k), args.retries,
                                              args.backoff_s, rng, top_k)
    except GaveUp as exc:
        return Trace(**base, top_k=top_k or 0, error=str(exc), attempts=exc.attempts)
    return _trace(base, answer, top_k or 0, attempts)


def _trace(base: dict[str, str], answer: Answer, top_k: int, attempts: int) -> Trace:
    usage = Usage.from_json(answer.usage)
    return Trace(**base, text=answer.text, tokens=answer.tokens, top_k=top_k, usage=usage,
                 finish_reason=answer.finish_reason, ttft_s=_round(answer.ttft_s),
                 latency_s=_round(answer.latency_s) or 0.0, attempts=attempts)


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)


def _count(tally: Tally, trace: Trace) -> None:
    if not trace.ok:
        tally.failures.append(f"{trace.id} ({trace.tier}): {trace.error}")
        return
    tally.recorded[trace.tier] += 1
    tally.tokens[trace.tier] += trace.usage.completion_tokens if trace.usage else len(trace.tokens)
    tally.seconds[trace.tier] += trace.latency_s
    if trace.top_k:
        tally.traced += len(trace.tokens)
        tally.narrow += sum(len(token.top_logprobs) < trace.top_k for token in trace.tokens)
        if trace.text and not trace.tokens:
            tally.untraced.append(trace.id)


def _summary(tally: Tally, top_k: int) -> None:
    for tier, answers in tally.recorded.items():
        tokens = f", {tally.tokens[tier] / answers:.1f} tokens per answer" if tally.tokens[tier] else ""
        print(f"{tier}: recorded {answers} answers{tokens}, {tally.seconds[tier] / answers:.2f} s per call")
    if tally.narrow:
        # llama.cpp, for one, merges alternatives that decode to the same text (digits, spaces).
        print(f"{tally.narrow} of {tally.traced} drafted tokens ({tally.narrow / tally.traced:.1%}) came with fewer "
              f"than the {top_k} alternatives asked for")
    if tally.untraced:
        print(f"{len(tally.untraced)} drafts came without log-probs (e.g. {tally.untraced[0]}): this upstream does not "
              "return them for those, and the router escalates such drafts", file=sys.stderr)
    if tally.failed:
        print(f"{tally.failed} calls failed (recorded with their error; run again to retry them):", file=sys.stderr)
        for failure in tally.failures[:10]:
            print(f"  {failure}", file=sys.stderr)


def _tiers(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    unknown = [name for name in names if name not in TIERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"tiers are {', '.join(TIERS)}; got {value!r}")
    return names


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def _top_k(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 20:
        raise argparse.ArgumentTypeError(f"must be between 1 and 20 (the OpenAI API's maximum), got {value}")
    return number

