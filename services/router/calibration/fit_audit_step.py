"""`calibrate fit --from-audit`: read the audited drafts, refit (fit_audit.py), print the comparison with the
running policy, and write the policy and the config only when --write-config is given."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from services.router.calibration import audit_source, configfile
from services.router.calibration.fit_audit import AuditFit, AuditOptions, fit_from_audit, skipped_line
from services.router.calibration.fitting import FitError
from services.router.risk import dump_policy
from shared.config import ConfigError, load_config
from shared.messages import AuditLabel


def run(args: argparse.Namespace, out: Path) -> int:
    try:
        labels, source = read_labels(args)
    except (OSError, ValueError, RedisError, ConfigError) as exc:
        print(f"fit --from-audit: cannot read the audited drafts: {exc}", file=sys.stderr)
        return 2
    if args.export_audit is not None:
        count = audit_source.write_export(labels, args.export_audit)
        print(f"exported {count} audited drafts to {args.export_audit}")
    options = AuditOptions(traces=args.traces, grades=args.grades, prompts=args.prompts, config=args.config,
                           policy=args.policy, top_k=args.top_k, max_escalation=args.max_escalation,
                           min_accuracy=args.min_accuracy, embedding=not args.no_embedding, weight=args.audit_weight,
                           prior_split=args.prior_split, progress=not args.quiet, source=source)
    if args.audit_weight <= 0:
        print("fit --from-audit: --audit-weight must be > 0", file=sys.stderr)
        return 2
    try:
        fitted = fit_from_audit(labels, options)
    except FitError as exc:
        print(f"fit --from-audit: {exc}", file=sys.stderr)
        return 1
    print(summary(fitted, source))
    if args.comparison_out is not None:
        args.comparison_out.parent.mkdir(parents=True, exist_ok=True)
        args.comparison_out.write_text(json.dumps({"trained_on": fitted.policy.trained_on,
                                                   **fitted.policy.metrics["audit"]}, indent=1) + "\n")
    if args.write_config is None:
        print(f"nothing written: --write-config CONFIG writes the new policy to {out} and points CONFIG's "
              "routing.risk_model at it")
        return 0
    dump_policy(fitted.policy, out)
    configfile.write(args.write_config, "routing", {"policy": "learned", "risk_model": str(out)})
    print(f"policy written to {out}; wrote routing.policy=learned, routing.risk_model={out} into {args.write_config}")
    return 0


def read_labels(args: argparse.Namespace) -> tuple[list[AuditLabel], str]:
    """The labels and where they came from: the export file, or the audit's stream on Redis."""
    if args.audit_file is not None:
        if not args.audit_file.exists():
            raise OSError(f"no such file: {args.audit_file}")
        return audit_source.read_export(args.audit_file), str(args.audit_file)
    url = args.redis_url or load_config(args.config).redis.url
    labels, broken = audit_source.read_redis(url)
    if broken:
        print(f"fit --from-audit: {broken} stream entries were not audit labels (skipped)", file=sys.stderr)
    return labels, f"{url} {audit_source.AUDIT_LABELLED_STREAM}"


def summary(fitted: AuditFit, source: str) -> str:
    policy, audit = fitted.policy, fitted.policy.metrics["audit"]
    frm = policy.trained_on["from_audit"]
    lines = [f"audited drafts: {audit['n']} usable ({audit['wrong']} judged wrong) from {source}; "
             f"left out: {skipped_line(fitted.audited.skipped)}",
             f"prior: {frm['prior']['n']} graded drafts ({frm['prior']['wrong']} wrong, "
             f"{policy.trained_on['split']} split of {policy.trained_on['dataset']}), weight 1 each; "
             f"audited drafts weight {frm['audited']['weight']} each",
             f"running policy: {fitted.running_path}"
             + (" (routing.policy is entropy: the router does not load it today)"
                if fitted.routing_policy != "learned" else "")
             + f"; new policy: {_chosen(policy.metrics)}, fitted on both (its risks of the audited drafts "
             "out-of-fold)"]
    for name, result in audit["comparison"].items():
        lines.append(f"{name} on the {audit['n']} audited drafts: running -> new")
        lines.append(f"  {'AUROC':<24}{_value(result['running']['auroc'], 'auroc')}  ->  "
                     f"{_value(result['new']['auroc'], 'auroc')}  (gain {_value(result['auroc_gain'], signed=True)})")
        for key, label in (("escalation_rate", "escalated at threshold"), ("wrong_caught", "wrong caught at thr."),
                           ("accuracy", "accuracy at threshold")):
            lines.append(f"  {label:<24}{_value(result['running']['at_threshold'][key], pct=True)}  ->  "
                         f"{_value(result['new']['at_threshold'][key], pct=True)}")
        lines.append(f"  {'wrong caught at 30%':<24}{_value(result['running']['caught_at_30'], pct=True)}  ->  "
                     f"{_value(result['new']['caught_at_30'], pct=True)}")
        lines.append(f"  {'threshold':<24}{result['running']['threshold']:.3f}  ->  "
                     f"{result['new']['threshold']:.3f}")
    return "\n".join(lines)


def _chosen(metrics: dict[str, Any]) -> str:
    parts = []
    for name, entry in metrics.get("variants", {}).items():
        chosen = entry["chosen"]
        parts.append(f"{name} {chosen['features']} C={chosen['C']}"
                     + (f" {chosen['components']} PCA components" if chosen.get("components") else "")
                     + (" the embedding stacked" if chosen.get("embedding") == "stacked" else ""))
    return "; ".join(parts)


def _value(entry: dict[str, Any], key: str = "value", pct: bool = False, signed: bool = False) -> str:
    """A value and its interval: "0.712 [0.650, 0.770]", "31% [24%, 38%]", "+0.041 [-0.020, 0.100]"."""
    value, ci = entry.get(key), entry.get("ci")
    if value is None:
        return "n/a"

    def shown(v: float) -> str:
        return f"{v:.0%}" if pct else f"{v:+.3f}" if signed else f"{v:.3f}"

    return shown(value) + (f" [{shown(ci[0])}, {shown(ci[1])}]" if ci else "")
