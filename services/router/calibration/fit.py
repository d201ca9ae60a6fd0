"""The `fit` step of `python -m services.router.calibrate`: learn the routing policy's risk model.

Reads the graded drafts (traces.jsonl + grades.jsonl, and the prompt set for each item's messages and
family), learns P(draft is wrong) on the train split (learn.py), chooses its threshold, measures it and
every single signal on the test split, and writes the policy JSON the router loads (services/router/risk.py).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.router.calibration.dataset import DATASET
from services.router.calibration.grade import DEFAULT_GRADES
from services.router.calibration.traces import DEFAULT_TRACES
from services.router.risk import RiskPolicy
from shared.config import DEFAULT_CONFIG_PATH
from shared.keys import AUDIT_LABELLED_STREAM

DEFAULT_OUT = Path(".data/calibration/policy.json")
AUDIT_OUT = Path(".data/calibration/policy-audit.json")
SHIPPED = Path("services/router/policies/smollm2.json")
MAX_ESCALATION = 0.3

HELP = "learn a routing policy: P(draft is wrong) from its trace and its prompt"
DESCRIPTION = f"""\
Learn which drafts to send to the heavyweight. Each graded draft (from `collect` and `grade`) becomes a
row of signals the router can compute when the draft ends: its token entropies (largest, mean, spread,
opening, first token, share and count above 1 bit, largest 10-token window mean), its log-probs (minimum,
0.8- and 0.95-quantiles, mean, spread, sum, opening, first token), its length and shape (repeated tokens,
lines, digits), properties of the prompt (length in characters and words, digits, how many numbers and
the longest, code, open-ended, steps, asks for a number or a list, constrained wording), and the prompt's
MiniLM embedding, reduced by PCA or stacked (a logistic regression on the whole embedding, its score one
more feature). A logistic regression learns P(draft is wrong) from them on the train split.

Two variants are fitted: trace_only, and with_embedding, which the router uses when the embedder
answered before the draft ended. For each, a few feature sets and regularisation strengths are tried
and the one with the best cross-validated AUROC is kept (folds by template family, so no family is
scored by a model that saw it; the PCA and the stacked regression are fitted inside each fold). The
threshold (risk at or below: accept) is the lowest whose escalation rate, counting the drafts the entropy
window aborts anyway, stays at or below --max-escalation (default {MAX_ESCALATION:.0%}) on the train
split's out-of-fold risks; or, with --min-accuracy, the highest whose overall accuracy reaches it. The
test split is then scored: AUROC of the policy and of every single signal with bootstrap 95% intervals,
the share of wrong drafts caught at a 30% escalation rate (and the most a perfect ranking could catch
there), and the escalation rate and accuracy at the threshold.

The policy is written as JSON (no pickles) to --out; set routing.policy: learned and routing.risk_model
to it (or run `report --write-config`). The shipped policy for the local SmolLM2 is {SHIPPED}.
Exit status 1 when --min-accuracy cannot be met (nothing is written then).

--from-audit fits a new policy on the audited production drafts (the audit's Redis stream
{AUDIT_LABELLED_STREAM} at the config's redis.url, or --audit-file, a JSONL export that --export-audit
writes) with the graded drafts above (--traces, --grades: by default their train split) as a prior: the same
search and threshold rule as above, on both at once, each audited draft weighing --audit-weight against one
prior draft, folds by template family or by the audited prompt's text. It prints how the new policy
compares with the running one (routing.risk_model, or --policy) on the audited drafts (AUROC, escalation and
wrong drafts caught at each one's threshold and at 30%, with bootstrap 95% intervals; the new policy's risks
out-of-fold) and writes nothing unless --write-config CONFIG is given: then the policy goes to --out
({AUDIT_OUT} by default) and CONFIG's routing.policy and routing.risk_model point at it. Nothing changes
routing without that flag.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES,
                        help=f"collect's output (default {DEFAULT_TRACES})")
    parser.add_argument("--grades", type=Path, default=DEFAULT_GRADES,
                        help=f"grade's output (default {DEFAULT_GRADES})")
    parser.add_argument("--prompts", type=Path, default=DATASET,
                        help="the prompt set the traces were collected from: messages and families "
                             "(default: the shipped dataset)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                        help="config YAML: the router's entropy rule (routing.*) and the embedder "
                             "(default: config.yaml)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where to write the policy (default {DEFAULT_OUT})")
    parser.add_argument("--top-k", type=int, default=None,
                        help="alternatives per token the entropy signals are computed from; the router must ask "
                             "for at least as many (default: the config's routing.top_logprobs)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--max-escalation", type=float, default=MAX_ESCALATION,
                        help="the largest share of requests escalated, the entropy window's aborts included "
                             f"(default {MAX_ESCALATION})")
    target.add_argument("--min-accuracy", type=float, default=None,
                        help="instead: the fewest escalations whose overall accuracy reaches this")
    parser.add_argument("--no-embedding", action="store_true",
                        help="fit the trace_only variant alone (no embedder needed)")
    parser.add_argument("--nested-cv", action="store_true",
                        help="also run the whole search inside each fold and report that AUROC (the best "
                             "candidate's own CV AUROC flatters: it won among many); about 5x the search's time")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    audit = parser.add_argument_group("refit from the audit (--from-audit)")
    audit.add_argument("--from-audit", action="store_true",
                       help="fit a policy on the audited production drafts, with the drafts above as a prior, "
                            "and compare it with the running one")
    audit.add_argument("--audit-file", type=Path, default=None,
                       help="read the audited drafts from this JSONL export (default: the audit's Redis stream)")
    audit.add_argument("--redis-url", default=None,
                       help="the Redis holding the audit (default: the config's redis.url)")
    audit.add_argument("--export-audit", type=Path, default=None, metavar="FILE",
                       help="also write the audited drafts read to this JSONL export (for offline use)")
    audit.add_argument("--audit-weight", type=float, default=1.0,
                       help="how much one audited draft weighs against one prior draft (default 1)")
    audit.add_argument("--prior-split", choices=("train", "all"), default="train",
                       help="which split of the prior drafts to fit on (default train)")
    audit.add_argument("--policy", type=Path, default=None,
                       help="the running policy to compare with and refit (default: the config's routing.risk_model)")
    audit.add_argument("--write-config", type=Path, default=None, metavar="CONFIG",
                       help="write the new policy to --out and point CONFIG's routing.risk_model at it "
                            "(routing.policy: learned); without it nothing is written")
    audit.add_argument("--comparison-out", type=Path, default=None, metavar="FILE",
                       help="also write the comparison as JSON to FILE")


@dataclass(frozen=True)
class Options:
    traces: Path = DEFAULT_TRACES
    grades: Path = DEFAULT_GRADES
    prompts: Path = DATASET
    config: Path = DEFAULT_CONFIG_PATH
    out: Path = DEFAULT_OUT
    top_k: int | None = None
    max_escalation: float = MAX_ESCALATION
    min_accuracy: float | None = None
    embedding: bool = True
    progress: bool = True
    nested_cv: bool = False


def run(args: argparse.Namespace) -> int:
    if args.from_audit:
        from services.router.calibration import fit_audit_step

        return fit_audit_step.run(args, AUDIT_OUT if args.out == DEFAULT_OUT else args.out)
    from services.router.calibration import fitting  # scikit-learn and the embedder load here, not for --help

    options = Options(traces=args.traces, grades=args.grades, prompts=args.prompts, config=args.config, out=args.out,
                      top_k=args.top_k, max_escalation=args.max_escalation, min_accuracy=args.min_accuracy,
                      embedding=not args.no_embedding, progress=not args.quiet, nested_cv=args.nested_cv)
    try:
        policy = fitting.fit_policy(options)
    except fitting.FitError as exc:
        print(f"fit: {exc}", file=sys.stderr)
        return 1
    fitting.write(policy, options.out)
    print(summary(policy, options.out))
    return 0


def summary(policy: RiskPolicy, out: Path) -> str:
    """What was fitted and how well it does, in a few lines."""
    data, metrics = policy.trained_on, policy.metrics
    lines = [f"fitted on {data['n']} train drafts ({data['wrong']} wrong, {data['families']} families) of "
             f"{data.get('model') or 'the drafter'} at top-{policy.top_k}; tested on {metrics['test_n']} drafts "
             f"({metrics['test_wrong']} wrong)"]
    for name, variant in policy.variants.items():
        lines.append(f"{name}: {_variant_line(metrics['variants'][name], policy.threshold_of(variant))}")
    signals = metrics.get("signals", {})
    ranked = sorted(signals.items(), key=lambda kv: -(kv[1]["test"]["auroc"] or 0.0))[:3]
    if ranked:
        lines.append("best single signals on test: " + ", ".join(
            f"{name} {_auroc(values['test'])}" for name, values in ranked))
    lines.append(f"policy written to {out}")
    return "\n".join(lines)


def _variant_line(m: dict[str, Any], threshold: float) -> str:
    at = m["test_at_threshold"]
    caught = m["caught_at_30"]
    return (f"{m['chosen']['features']} (C={m['chosen']['C']}"
            + (f", {m['chosen']['components']} PCA components" if m["chosen"]["components"] else "")
            + (", the embedding stacked" if m["chosen"].get("embedding") == "stacked" else "")
            + f"): CV AUROC {_auroc(m['cv'])}"
            + (f", nested CV AUROC {_auroc(m['nested_cv'])}" if "nested_cv" in m else "")
            + f", test AUROC {_auroc(m['test'])}, wrong caught at 30% escalation "
            + ("n/a" if caught["value"] is None else f"{caught['value']:.0%}")
            + ("" if caught.get("best") is None else f" (a perfect ranking: {caught['best']:.0%})")
            + f"; threshold {threshold:.3f}: test escalation {at['escalation_rate']:.0%}, "
            f"accuracy {at['accuracy']:.3f}")


def _auroc(value: dict[str, Any]) -> str:
    if value.get("auroc") is None:
        return "n/a"
    ci = value.get("ci")
    return f"{value['auroc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
