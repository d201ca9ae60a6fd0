"""The `sweep` step of `python -m services.router.calibrate`: the router's entropy rule, replayed offline
on graded drafts over a grid of settings, with costs, intervals, baselines and the operating point.

This module is the command line; sweeping.py does the work (numpy, scikit-learn and the router load
there, so `--help` stays quick)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.router.calibration.bootstrap import RESAMPLES, SEED
from services.router.calibration.dataset import DATASET
from services.router.calibration.grade import DEFAULT_GRADES
from services.router.calibration.traces import DEFAULT_TRACES
from shared.config import DEFAULT_CONFIG_PATH, load_config

if TYPE_CHECKING:
    from services.router.calibration.graded import Loaded

KIND = "draftgate-sweep"
VERSION = 1
ALL = "all"
DEFAULT_OUT = Path(".data/calibration/sweep.json")
THRESHOLDS = tuple(round(0.5 + 0.1 * i, 1) for i in range(26))  # bits
WINDOWS = (5, 10, 20)  # tokens
EARLY_EXIT = (0, 5, 10)  # tokens
MIN_ACCURACY = 0.9

HELP = "replay the graded drafts through the router's entropy rule over a grid of settings"
DESCRIPTION = """\
Replays every graded draft (traces.jsonl from `collect`, grades.jsonl from `grade`) through the
router's own entropy rule, offline and with no model calls, at every point of a grid of threshold
(bits) x window (tokens) x early exit (tokens): which drafts the router would have accepted, and
where it would have aborted the others.

For every point, per split (train, test, all) and per category: the share escalated, the accuracy of
the accepted drafts, the overall accuracy (an escalated request is as right as the heavyweight's graded
answer, or assumed right when none was collected; the output says which), the cost per request and
the cost reduction against sending everything to the heavyweight (prices from --config; the drafter
is paid for its prompt and the tokens it wrote before an abort), with bootstrap 95% intervals.

The operating point is chosen on --choose-split (train by default, so the test split measures it
fairly): the largest cost reduction whose overall accuracy stays >= --min-accuracy; the knee of the
curve is given too. Baselines escalate the same share by simpler means (random, prompt length, the
draft's minimum log-prob, largest token entropy, 0.8-quantile of -log-prob) next to always-drafter and
always-heavyweight; each signal's AUROC for telling wrong drafts from right ones comes with an interval.
Everything goes to one JSON file (--out) that `report` turns into Markdown and plots. Exit status 1
when no point reaches --min-accuracy.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES, help=f"from collect (default {DEFAULT_TRACES})")
    parser.add_argument("--grades", type=Path, default=DEFAULT_GRADES, help=f"from grade (default {DEFAULT_GRADES})")
    parser.add_argument("--prompts", type=Path, default=DATASET,
                        help="the prompt set, for the prompt-length baseline and signals (default: the shipped one)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                        help="config YAML: the tiers' prices and routing.top_logprobs (default: config.yaml)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="alternatives per token the router judges (default: the config's routing.top_logprobs);"
                             " each recorded token's top-20 is cut to it")
    parser.add_argument("--thresholds", type=floats, default=THRESHOLDS,
                        help="entropy thresholds in bits: START:STOP:STEP or a comma list (default 0.5:3.0:0.1)")
    parser.add_argument("--windows", type=ints, default=WINDOWS,
                        help="window sizes in tokens, comma list (default 5,10,20)")
    parser.add_argument("--early-exit", type=ints, default=EARLY_EXIT,
                        help="early-exit lengths in tokens, comma list (default 0,5,10)")
    parser.add_argument("--min-accuracy", type=float, default=MIN_ACCURACY,
                        help=f"overall accuracy the operating point must keep (default {MIN_ACCURACY})")
    parser.add_argument("--choose-split", default="train", choices=("train", "test", ALL),
                        help="the split the operating point is chosen on (default train)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES,
                        help=f"bootstrap resamples (default {RESAMPLES})")
    parser.add_argument("--seed", type=int, default=SEED, help="bootstrap seed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the JSON result (default {DEFAULT_OUT})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def floats(text: str) -> tuple[float, ...]:
    """START:STOP:STEP (inclusive, to 6 decimals) or a comma list."""
    if ":" in text:
        start, stop, step = (float(x) for x in text.split(":"))
        if step <= 0 or stop < start:
            raise argparse.ArgumentTypeError("need START <= STOP and STEP > 0")
        return tuple(round(start + step * i, 6) for i in range(round((stop - start) / step) + 1))
    return tuple(float(x) for x in text.split(",") if x.strip())


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def run(args: argparse.Namespace) -> int:
    from services.router.calibration import graded
    from services.router.calibration.graded import Prices
    from services.router.calibration.outcomes import Grid
    from services.router.calibration.sweeping import Options, sweep

    config = load_config(args.config)
    drafter, heavy = config.drafter.price, config.heavyweight.price
    if drafter is None or heavy is None:
        print(f"{args.config}: the drafter and the heavyweight need prices (<tier>.input_usd_per_mtok and "
              "output_usd_per_mtok) for the sweep to count costs", file=sys.stderr)
        return 2
    loaded = graded.load(args.traces, args.grades, args.prompts if args.prompts.exists() else None)
    top_k = args.top_k or config.routing.top_logprobs
    problem = _unusable(loaded, top_k, args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    options = Options(grid=Grid(args.thresholds, args.windows, args.early_exit), top_k=top_k,
                      choose_split=args.choose_split, min_accuracy=args.min_accuracy, resamples=args.resamples,
                      seed=args.seed, progress=not args.quiet)
    result = sweep(loaded, Prices(drafter, heavy), options)
    result["inputs"].update(traces=str(args.traces), grades=str(args.grades), config=str(args.config),
                            prompts=str(args.prompts) if args.prompts.exists() else None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    _print_summary(result, args.out)
    return 0 if result["chosen"] is not None else 1


def _unusable(loaded: Loaded, top_k: int, args: argparse.Namespace) -> str | None:
    if not loaded.items:
        return (f"no graded drafts: {args.traces} and {args.grades} share no successful drafter answer "
                f"(left out: {dict(loaded.skipped) or 'none'}); run collect and grade first")
    if loaded.top_k < top_k:
        return (f"the drafts were recorded with {loaded.top_k} alternatives per token, fewer than the router's "
                f"k={top_k}: replaying them would judge a different distribution (pass --top-k {loaded.top_k} "
                "or collect again)")
    return None


def _print_summary(result: dict[str, Any], out: Path) -> None:
    inputs = result["inputs"]
    print(f"{inputs['items']} graded drafts ({inputs['wrong_drafts']} wrong), k={inputs['top_k']}, "
          f"{len(result['rows'])} rows; escalated answers: {result['assumptions']['escalated_answers']}")
    for label in ("chosen", "knee"):
        point = result[label]
        if point is None:
            print(f"{label}: none" + (f" (no point keeps overall accuracy >= {result['min_accuracy']} on the "
                                      f"{result['choose_split']} split)" if label == "chosen" else ""))
            continue
        shown = [r for r in point["rows"] if r["category"] == ALL]
        parts = [f"{r['split']}: escalate {r['escalation_rate']:.1%}, accuracy {r['overall_accuracy']:.3f}, "
                 f"saves {r['cost_reduction']:.1%}" for r in shown]
        print(f"{label}: threshold {point['threshold']} window {point['window']} early_exit {point['early_exit']}"
              f" — " + "; ".join(parts))
    print(f"written to {out}")
