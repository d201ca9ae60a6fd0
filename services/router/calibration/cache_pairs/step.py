"""The `cache-pairs` step of `python -m services.router.calibrate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.router.calibration.cache_pairs import run as cache_pairs
from services.router.calibration.cache_pairs.choose import MIN_PRECISION

HELP = "the semantic cache's verifier and similarity floor"
DESCRIPTION = """\
Embed every pair of the labelled dataset (paraphrases and near misses of the same request) with the
embedder configured in --config, fit the learned verifier on the train split, then measure precision and
recall on the test split for cosine-only, rules and learned over similarity floors 0.50-0.99.

The operating point: precision >= --min-precision and no near miss served on the test split, then the
most paraphrases served. It is written into --config (cache.similarity_floor, cache.verify,
cache.verify_model; comments kept), the model to --model, and a JSON report and a precision-recall PNG
to --out. Exit status 1 when no floor meets the target (nothing is written to the config then).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = cache_pairs.Options()
    parser.add_argument("--data", type=Path, default=defaults.data,
                       help="labelled pairs, JSON lines (default: the shipped dataset; `python -m scripts.cache_pairs`"
                            " regenerates it)")
    parser.add_argument("--config", type=Path, default=defaults.config,
                       help="config YAML: the embedder is read from it, the chosen point written to it "
                            "(default: config.yaml)")
    parser.add_argument("--model", type=Path, default=defaults.model,
                       help="where to write the learned verifier's JSON (default: the shipped "
                            "services/cache/verifier_model.json, which cache.verify_model: null means)")
    parser.add_argument("--out", type=Path, default=defaults.out, help="directory for the report and the plot")
    parser.add_argument("--min-precision", type=float, default=MIN_PRECISION,
                       help=f"precision the operating point must keep on the test split (default {MIN_PRECISION})")
    parser.add_argument("--dry-run", action="store_true", help="measure and report, but leave the config alone")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    options = cache_pairs.Options(data=args.data, config=args.config, model=args.model, out=args.out,
                                  write_config=not args.dry_run, min_precision=args.min_precision,
                                  progress=not args.quiet)
    report = cache_pairs.run(options)
    _summary(report, options)
    return 0 if report["chosen"] is not None else 1


def _summary(report: dict, options: cache_pairs.Options) -> None:
    data, chosen, baseline = report["dataset"], report["chosen"], report["baseline_cosine_only"]
    print(f"{data['pairs']} pairs, test split {data['test']} ({data['test_paraphrases']} paraphrases, "
          f"{data['test_near_misses']} near misses); embedder {report['embedder']['backend']}")
    print(f"cosine only at {baseline['floor']}: precision {baseline['precision']:.3f}, recall {baseline['recall']:.3f},"
          f" {baseline['wrong_hits']} wrong hits")
    for verifier, best in report["best_safe_point_per_verifier"].items():
        if best is None:
            print(f"{verifier}: no floor keeps precision >= {options.min_precision} with no wrong hit")
        else:
            print(f"{verifier}: best safe floor {best['floor']}: precision {best['precision']:.3f}, "
                  f"recall {best['recall']:.3f}")
    if chosen is None:
        print("no operating point meets the target; config left unchanged", file=sys.stderr)
        return
    where = report["config_written"] or "(dry run: not written)"
    print(f"chosen: verify={chosen['verifier']} similarity_floor={chosen['floor']} -> {where}; "
          f"model {chosen['model']}; report and plot in {options.out}")

