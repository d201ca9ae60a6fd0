"""Verified semantic hits: precision and recall of the cache on the pair dataset's test split, per verifier.

`python -m bench.cache_verify` embeds the labelled pairs with the configured embedder (in process, the
embedder's own backend factory), then scores the test split the way the cache decides (an exact key, or
cosine >= cache.similarity_floor and the verifier passes) with calibration's own code: cosine only (no
verifier, the cache before issue #15, also at its old 0.95), rules and learned (the shipped model), at the
configured floor and at each verifier's best safe floor. It also measures what a check costs: CPU
microseconds per candidate, cold (each text read for the first time) and warm (readings cached).
Targets: at the configured point no near miss served, precision >= 99.5%, paraphrase recall >= 60%.
Writes bench/results/cache_verify.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from bench.harness import write_result
from services.cache import logistic
from services.cache.verify import SHIPPED_MODEL, build_verifier, reading
from services.router.calibration.cache_pairs import embed, evaluate, pairs
from services.router.calibration.cache_pairs import run as cache_pairs
from services.router.calibration.cache_pairs.choose import MIN_PRECISION
from services.router.calibration.cache_pairs.evaluate import Point
from shared.config import load_config

TARGET_RECALL = 0.60
OLD_FLOOR = 0.95  # the cosine-only cache's threshold before verification


def check_cost_us(kind: str, test: Sequence[pairs.LabelledPair], rounds: int) -> dict[str, float]:
    """CPU microseconds per check: cold (the reading cache emptied first) and warm (every text already read)."""
    verifier = build_verifier(kind)

    def one_pass() -> float:
        started = time.process_time()
        for pair in test:
            verifier.check(pair.query, pair.cached, 0.9)
        return (time.process_time() - started) / len(test) * 1e6

    cold = []
    for _ in range(rounds):
        reading.cache_clear()
        cold.append(one_pass())
    warm = [one_pass() for _ in range(rounds)]
    return {"cold_us": round(min(cold), 1), "warm_us": round(min(warm), 1)}


def best_safe(points: Sequence[Point], verifier: str) -> dict[str, Any] | None:
    safe = [p for p in points if p.verifier == verifier and p.wrong_hits == 0 and p.precision >= MIN_PRECISION]
    return max(safe, key=lambda p: (p.recall, p.floor)).to_json() if safe else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the test split per cost figure")
    args = parser.parse_args(argv or [])
    config = load_config()
    labelled = pairs.load()
    test = [p for p in labelled if p.split == "test"]
    cosines = embed.cosines(test, config.embedder, progress=False)
    model = logistic.load(config.cache.verify_model or SHIPPED_MODEL)
    scored, points = cache_pairs.measure(test, cosines, model, evaluate.floor_grid())
    floor, kind = config.cache.similarity_floor, config.cache.verify
    configured = evaluate.point(scored, kind, floor)
    result = {
        "dataset": {"test_pairs": len(test), "paraphrases": configured.paraphrases,
                    "near_misses": configured.near_misses, "exact_hits": sum(p.exact for p in test)},
        "embedder": config.embedder.backend,
        "configured": {"verify": kind, "similarity_floor": floor, **configured.to_json()},
        "at_configured_floor": {v: evaluate.point(scored, v, floor).to_json() for v in evaluate.VERIFIERS},
        "cosine_only_at_0.95": evaluate.point(scored, "cosine", OLD_FLOOR).to_json(),
        "best_safe_floor": {v: best_safe(points, v) for v in evaluate.VERIFIERS},
        "by_class_at_configured_point": evaluate.by_class(scored, kind, floor),
        "check_cost": {kind_: check_cost_us(kind_, test, args.rounds) for kind_ in ("rules", "learned")},
        "targets": {"wrong_hits": 0, "min_precision": MIN_PRECISION, "min_recall": TARGET_RECALL},
        "meets_targets": configured.wrong_hits == 0 and configured.precision >= MIN_PRECISION
        and configured.recall >= TARGET_RECALL,
    }
    write_result("cache_verify", result)
    old = result["cosine_only_at_0.95"]
    print(f"cache_verify: {kind} at {floor}: precision {configured.precision:.3f}, recall {configured.recall:.3f}, "
          f"{configured.wrong_hits} wrong hits (cosine only at {OLD_FLOOR}: precision {old['precision']:.3f}, "
          f"recall {old['recall']:.3f}, {old['wrong_hits']} wrong hits); "
          f"targets {'met' if result['meets_targets'] else 'MISSED'}")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
