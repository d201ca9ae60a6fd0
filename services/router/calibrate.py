"""`python -m services.router.calibrate <step>`: fit draftgate's tunable decisions from data and write them.

Each step is a module of services/router/calibration/ with HELP (one line), DESCRIPTION,
add_arguments(parser) and run(args) -> exit status; STEPS names them in the order of the pipeline.
Step modules import heavy libraries (scikit-learn, matplotlib, the embedder) inside run(), so
`--help` stays quick.
"""

from __future__ import annotations

import argparse
import importlib
import sys

OVERVIEW = """\
Calibrate draftgate from data. The routing pipeline: collect (run a prompt set through the drafter,
recording every token's log-probs), grade (mark each draft right or wrong), sweep (replay the traces
through the router's entropy rule over a grid of settings, with costs and intervals), fit (learn a
routing policy from the traces), report (a Markdown report with plots; --write-config writes the chosen
point). cache-pairs does the same for the semantic cache's verifier. `<step> --help` says more."""

STEPS = {
    "collect": "services.router.calibration.collect",
    "grade": "services.router.calibration.grade",
    "sweep": "services.router.calibration.sweep",
    "fit": "services.router.calibration.fit",
    "report": "services.router.calibration.report",
    "cache-pairs": "services.router.calibration.cache_pairs.step",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.router.calibrate", description=OVERVIEW,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    modules = {}
    for name, path in STEPS.items():
        module = modules[name] = importlib.import_module(path)
        step = steps.add_parser(name, help=module.HELP, description=module.DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(step)
    args = parser.parse_args(argv)
    return int(modules[args.step].run(args))


if __name__ == "__main__":
    sys.exit(main())
