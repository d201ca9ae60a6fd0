"""`calibrate cache-pairs`: embed the labelled pairs, fit the learned verifier on the train split, measure
every verifier on the test split over the similarity floors, choose and write the operating point."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.cache import logistic
from services.cache.logistic import LogisticModel
from services.cache.verify import SHIPPED_MODEL, LearnedVerifier, RulesVerifier
from services.router.calibration import configfile
from services.router.calibration.cache_pairs import evaluate, pairs
from services.router.calibration.cache_pairs.choose import MIN_PRECISION, choose
from services.router.calibration.cache_pairs.evaluate import Point, Scored
from shared.config import DEFAULT_CONFIG_PATH, EmbedderConfig, load_config

RESULTS = Path(__file__).resolve().parent.parent / "results"
BASELINE_FLOOR = 0.95  # the cosine-only cache before verification


@dataclass(frozen=True, slots=True)
class Options:
    data: Path = pairs.DATASET
    config: Path = DEFAULT_CONFIG_PATH  # the embedder is read from it, the operating point written to it
    model: Path = SHIPPED_MODEL
    out: Path = RESULTS  # cache_pairs.json and cache_pairs_pr.png
    write_config: bool = True
    min_precision: float = MIN_PRECISION
    floors: tuple[float, ...] = field(default_factory=lambda: tuple(evaluate.floor_grid()))
    progress: bool = True


def checks(model: LogisticModel) -> dict[str, Callable[[str, str, float], bool]]:
    """Each verifier as a yes/no on (query, cached, cosine); the floor is applied apart."""
    rules, learned = RulesVerifier(), LearnedVerifier(model)
    return {"cosine": lambda q, c, s: True, "rules": lambda q, c, s: rules.check(q, c, s).passed,
            "learned": lambda q, c, s: learned.check(q, c, s).passed}


def measure(test: Sequence[pairs.LabelledPair], cosines: Sequence[float], model: LogisticModel,
            floors: Sequence[float]) -> tuple[list[Scored], list[Point]]:
    scored = evaluate.score(test, cosines, checks(model))
    return scored, [p for v in evaluate.VERIFIERS for p in evaluate.sweep(scored, v, floors)]


def run(options: Options) -> dict[str, Any]:
    # Heavy (the embedder, scikit-learn, matplotlib): loaded when the step runs, not for --help.
    from services.router.calibration.cache_pairs import embed, fit, plot

    labelled = pairs.load(options.data)
    embedder = load_config(options.config).embedder
    cosines = embed.cosines(labelled, embedder, progress=options.progress)
    train = [(p, c) for p, c in zip(labelled, cosines, strict=True) if p.split == "train"]
    test = [(p, c) for p, c in zip(labelled, cosines, strict=True) if p.split == "test"]
    model = fit.fit([p for p, _ in train], [c for _, c in train], options.floors)
    model = dataclasses.replace(model, about={**model.about, "dataset": _shown(options.data),
                                              "embedder": embedder.backend})
    options.model.parent.mkdir(parents=True, exist_ok=True)
    logistic.dump(model, options.model)
    scored, points = measure([p for p, _ in test], [c for _, c in test], model, options.floors)
    chosen = choose(points, options.min_precision)
    report = _report(options, labelled, embedder, model, scored, points, chosen)
    options.out.mkdir(parents=True, exist_ok=True)
    plot.precision_recall(points, chosen, options.out / "cache_pairs_pr.png",
                          f"cache pairs, test split ({len(test)} pairs, embedder {embedder.backend})")
    (options.out / "cache_pairs.json").write_text(json.dumps(report, indent=2) + "\n")
    if chosen is not None and options.write_config:
        configfile.write(options.config, "cache", config_values(chosen, options.model))
    return report


def config_values(chosen: Point, model_path: Path) -> dict[str, object]:
    shipped = model_path.resolve() == SHIPPED_MODEL.resolve()
    return {"similarity_floor": chosen.floor, "verify": chosen.verifier,
            "verify_model": None if shipped else str(model_path)}


def _report(options: Options, labelled: list[pairs.LabelledPair], embedder: EmbedderConfig, model: LogisticModel,
            scored: list[Scored], points: list[Point], chosen: Point | None) -> dict[str, Any]:
    def at(verifier: str, floor: float) -> dict[str, Any]:
        return evaluate.point(scored, verifier, floor).to_json()

    best = {v: _best_recall(points, v, options.min_precision) for v in evaluate.VERIFIERS}
    return {
        "dataset": {"path": _shown(options.data), "pairs": len(labelled),
                    "train": sum(p.split == "train" for p in labelled),
                    "test": len(scored), "test_paraphrases": sum(s.pair.same for s in scored),
                    "test_near_misses": sum(not s.pair.same for s in scored),
                    "test_exact_hits": sum(s.pair.exact for s in scored)},
        "embedder": {"backend": embedder.backend, "model": embedder.model},
        "min_precision": options.min_precision,
        "chosen": None if chosen is None else {**chosen.to_json(), "model": _shown(options.model),
                                               "by_class": evaluate.by_class(scored, chosen.verifier, chosen.floor)},
        "baseline_cosine_only": at("cosine", BASELINE_FLOOR),
        "best_safe_point_per_verifier": best,
        "at_chosen_floor": None if chosen is None else {v: at(v, chosen.floor) for v in evaluate.VERIFIERS},
        "model": {"threshold": model.threshold, **model.about},
        "sweep": [p.to_json() for p in points],
        "config_written": _shown(options.config) if chosen is not None and options.write_config else None,
    }


def _best_recall(points: Sequence[Point], verifier: str, min_precision: float) -> dict[str, Any] | None:
    safe = [p for p in points if p.verifier == verifier and p.wrong_hits == 0 and p.precision >= min_precision]
    return max(safe, key=lambda p: (p.recall, p.floor)).to_json() if safe else None


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is under it: reports stay the same on every clone."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
