"""The `report` step of `python -m services.router.calibrate`: the sweep (and a fitted policy) as a
Markdown report with PNG plots; --write-config puts the chosen point into a config file."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.router.calibration.dataset import DATASET
from services.router.calibration.grade import DEFAULT_GRADES
from services.router.calibration.sweep import ALL, DEFAULT_OUT, KIND
from services.router.calibration.traces import DEFAULT_TRACES

DEFAULT_REPORT = Path(".data/calibration/report")

HELP = "a Markdown report with plots from the sweep (and a fitted policy); --write-config sets the chosen point"
DESCRIPTION = """\
Reads the sweep's JSON (--sweep, from `sweep`) and writes report.md with three PNGs into --out:
cost reduction against overall accuracy over the whole grid, with 95% intervals, the chosen point and
the knee marked and the baselines drawn at every escalation rate; the entropy of right and wrong drafts;
ROC curves of every signal for telling wrong drafts from right ones. Tables: the chosen point and the
knee per split, the baselines at the same escalation rate, every category at the chosen point, and each
signal's AUROC with its interval and the share of wrong drafts it catches at a 30% escalation rate.

With --policy (a file from `fit`), the learned policy is scored on the same drafts exactly as the router
scores them (services/router/risk.py; --traces and --prompts give the drafts) and drawn and tabled
beside the signals: its trace_only variant always, with_embedding too when --embed is given (the
prompts are embedded with --config's embedder).

--write-config CONFIG writes the chosen threshold, window and early exit into CONFIG's routing section
(and routing.policy: learned with routing.risk_model when --policy is given), keeping its comments.
Exit status 1 when --write-config is asked but the sweep chose no point."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sweep", type=Path, default=DEFAULT_OUT, help=f"the sweep's JSON (default {DEFAULT_OUT})")
    parser.add_argument("--out", type=Path, default=DEFAULT_REPORT,
                        help=f"directory for report.md and the plots (default {DEFAULT_REPORT})")
    parser.add_argument("--split", default=None, choices=("train", "test", ALL),
                        help="the split the tables and plots show (default: the sweep's, test when there is one)")
    parser.add_argument("--policy", type=Path, default=None, help="a risk policy from `fit`, drawn beside the signals")
    parser.add_argument("--embed", action="store_true",
                        help="also score the policy's with_embedding variant (embeds the prompts; slower)")
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES, help="drafts to score the policy on")
    parser.add_argument("--grades", type=Path, default=DEFAULT_GRADES, help="their grades")
    parser.add_argument("--prompts", type=Path, default=DATASET, help="their prompts (default: the shipped set)")
    parser.add_argument("--config", type=Path, default=None,
                        help="config YAML whose embedder --embed uses (default: config.yaml)")
    parser.add_argument("--write-config", type=Path, default=None, metavar="CONFIG",
                        help="write the chosen point (and the policy) into this config YAML")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


@dataclass
class PolicyScores:
    """A policy's risk for each draft, per variant, and what the policy file says of itself."""

    path: Path
    risks: dict[str, dict[str, float]] = field(default_factory=dict)  # variant -> item id -> risk
    metrics: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)


def run(args: argparse.Namespace) -> int:
    from services.router.risk import PolicyError

    try:
        result = load_sweep(args.sweep)
        policy = score_policy(args) if args.policy is not None else None
    except (OSError, ValueError, PolicyError) as exc:
        print(exc, file=sys.stderr)
        return 2
    path = render(result, args.out, args.split, policy)
    print(f"report: {path}")
    if args.write_config is None:
        return 0
    values = config_values(result, args.policy)
    if values is None:
        print(f"the sweep chose no point (no setting kept accuracy >= {result['min_accuracy']}); "
              f"{args.write_config} left unchanged", file=sys.stderr)
        return 1
    from services.router.calibration import configfile

    configfile.write(args.write_config, "routing", values)
    print(f"wrote {', '.join(f'routing.{k}={v}' for k, v in values.items())} into {args.write_config}")
    return 0


def load_sweep(path: Path) -> dict[str, Any]:
    result = json.loads(path.read_text())
    if not isinstance(result, dict) or result.get("kind") != KIND:
        raise ValueError(f"{path} is not a sweep result (kind {KIND!r}); run `calibrate sweep` first")
    return result


def config_values(result: Mapping[str, Any], policy: Path | None) -> dict[str, object] | None:
    """The routing keys to write: the chosen entropy rule, and the learned policy when one is given."""
    chosen = result.get("chosen")
    if chosen is None:
        return None
    values: dict[str, object] = {"entropy_threshold": chosen["threshold"], "window": chosen["window"],
                                 "early_exit_tokens": chosen["early_exit"]}
    if policy is not None:
        values.update(policy="learned", risk_model=str(policy))
    return values


def score_policy(args: argparse.Namespace) -> PolicyScores:
    """Every graded draft's risk by the policy file, as the router computes it at the end of a draft."""
    from services.router.calibration import graded
    from services.router.risk import WITH_EMBEDDING, load_policy, risk
    from services.router.signals import prompt_text

    policy = load_policy(args.policy)
    loaded = graded.load(args.traces, args.grades, args.prompts)
    items = [i for i in loaded.items if i.messages is not None]
    scores = PolicyScores(path=args.policy, metrics=dict(policy.metrics))
    scores.risks["trace_only"] = {i.id: risk(policy, i.tokens, i.messages or (), None).value for i in items}
    scores.thresholds["trace_only"] = policy.threshold_of(policy.trace_only)
    if args.embed and policy.with_embedding is not None:
        from services.router.calibration.fitting import embed_texts
        from shared.config import load_config

        texts = {i.id: prompt_text(i.messages or ()) for i in items}
        vectors, _ = embed_texts(list(texts.values()), load_config(args.config).embedder, not args.quiet)
        scores.risks[WITH_EMBEDDING] = {i.id: risk(policy, i.tokens, i.messages or (), vectors[texts[i.id]].tolist()
                                                   ).value for i in items}
        scores.thresholds[WITH_EMBEDDING] = policy.threshold_of(policy.with_embedding)
    return scores


def render(result: Mapping[str, Any], out: Path, split: str | None = None,
           policy: PolicyScores | None = None) -> Path:
    """Write report.md and its plots into `out`; the path of report.md."""
    from services.router.calibration import reporting

    out.mkdir(parents=True, exist_ok=True)
    view = reporting.View.of(result, split or result["report_split"], policy)
    reporting.draw(view, out)
    path = out / "report.md"
    path.write_text(reporting.markdown(view))
    return path
