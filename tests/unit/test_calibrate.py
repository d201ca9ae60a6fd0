"""Calibration's pure steps: scoring pairs over floors, choosing the point, writing it into YAML; and the
shipped point is the same everywhere it is written down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from services.cache import logistic
from services.cache.verify import SHIPPED_MODEL
from services.router.calibration import configfile
from services.router.calibration.cache_pairs import evaluate, fit
from services.router.calibration.cache_pairs.choose import choose
from services.router.calibration.cache_pairs.evaluate import Point, Scored
from services.router.calibration.cache_pairs.pairs import LabelledPair
from services.router.calibration.cache_pairs.run import RESULTS, config_values
from shared.config import CacheConfig, load_config

REPO = Path(__file__).resolve().parents[2]


def pair(same: bool, text: str = "q", exact: bool = False) -> LabelledPair:
    return LabelledPair(text, text if exact else text + " other", same, "c", "f", "test")


def test_a_pair_hits_on_an_exact_key_or_above_the_floor_when_the_verifier_passes() -> None:
    scored = [Scored(pair(True), 0.95, {"rules": True}), Scored(pair(True), 0.85, {"rules": True}),
              Scored(pair(True), 0.99, {"rules": False}), Scored(pair(True, exact=True), 0.1, {"rules": False}),
              Scored(pair(False), 0.97, {"rules": True}), Scored(pair(False), 0.97, {"rules": False})]
    at_90 = evaluate.point(scored, "rules", 0.90)
    assert (at_90.hits, at_90.paraphrase_hits, at_90.wrong_hits, at_90.exact_hits) == (3, 2, 1, 1)
    assert at_90.precision == pytest.approx(2 / 3) and at_90.recall == pytest.approx(2 / 4)
    at_80 = evaluate.point(scored, "rules", 0.80)
    assert at_80.recall == pytest.approx(3 / 4)
    nothing = evaluate.point(scored[2:3], "rules", 0.5)
    assert (nothing.hits, nothing.precision, nothing.recall) == (0, 1.0, 0.0)
    assert evaluate.floor_grid(0.5, 0.6, 0.05) == [0.5, 0.55, 0.6]


def make_point(verifier: str, floor: float, paraphrase_hits: int, wrong: int) -> Point:
    return Point(verifier, floor, paraphrase_hits + wrong, paraphrase_hits, wrong, 0, 100, 100)


def test_choose_keeps_precision_and_no_wrong_hit_then_maximises_recall() -> None:
    points = [make_point("cosine", 0.5, 99, 0), make_point("rules", 0.8, 90, 1), make_point("rules", 0.9, 70, 0),
              make_point("learned", 0.85, 70, 0), make_point("learned", 0.8, 70, 0), make_point("learned", 0.7, 80, 1)]
    chosen = choose(points)
    assert chosen is not None and (chosen.verifier, chosen.floor) == ("learned", 0.85)  # ties: learned, higher floor
    assert choose([make_point("rules", 0.8, 90, 1)]) is None
    assert choose([make_point("cosine", 0.9, 50, 0)]) is None  # cosine alone is never shipped


def test_the_threshold_lets_no_near_miss_through_above_the_best_floor() -> None:
    rows = fit.Rows(x=[[0.0]] * 6, same=[True, True, True, False, False, False],
                    cosine=[0.95, 0.9, 0.7, 0.92, 0.75, 0.95], family=["a"] * 6, vetoed=[False] * 5 + [True],
                    paraphrases=4, exact_paraphrases=1)
    probabilities = [0.9, 0.8, 0.95, 0.6, 0.99, 1.0]  # the vetoed near miss never counts
    threshold, floor, recall = fit.threshold_for(rows, probabilities, [0.7, 0.8, 0.9])
    assert floor == 0.8 and threshold == pytest.approx(0.6 + fit.MARGIN) and recall == pytest.approx(3 / 4)


CONFIG = """\
# top comment
cache:
  host: 127.0.0.1
  similarity_floor: 0.80       # floor comment
  verify: learned              # verify comment

embedder:
  similarity_floor: 0.5        # another section's key of the same name
"""


def test_configfile_changes_only_the_values_and_keeps_comments() -> None:
    written = configfile.set_values(CONFIG, "cache", {"similarity_floor": 0.86, "verify": "rules",
                                                      "verify_model": None})
    assert "  similarity_floor: 0.86       # floor comment\n" in written
    assert "  verify: rules                # verify comment\n" in written
    assert "# top comment" in written and "  similarity_floor: 0.5        # another" in written
    assert yaml.safe_load(written)["cache"] == {"host": "127.0.0.1", "similarity_floor": 0.86, "verify": "rules",
                                                "verify_model": None}
    nested = configfile.set_values("data:\n  config.yaml: |\n    cache:\n      verify: learned\n", "cache",
                                   {"verify": "a path.json"})
    assert nested == 'data:\n  config.yaml: |\n    cache:\n      verify: "a path.json"\n'
    with pytest.raises(ValueError, match="no `router:` section"):
        configfile.set_values(CONFIG, "router", {"port": 1})


def test_config_values_name_no_model_path_for_the_shipped_model(tmp_path: Path) -> None:
    point = make_point("learned", 0.85, 70, 0)
    assert config_values(point, SHIPPED_MODEL) == {"similarity_floor": 0.85, "verify": "learned",
                                                   "verify_model": None}
    assert config_values(point, tmp_path / "m.json")["verify_model"] == str(tmp_path / "m.json")


def test_the_shipped_operating_point_is_the_calibrated_one_everywhere() -> None:
    report = json.loads((RESULTS / "cache_pairs.json").read_text())
    chosen = report["chosen"]
    assert chosen["wrong_hits"] == 0 and chosen["precision"] >= 0.995 and chosen["recall"] >= 0.60
    shipped = {"similarity_floor": chosen["floor"], "verify": chosen["verifier"]}
    defaults = CacheConfig()
    assert {"similarity_floor": defaults.similarity_floor, "verify": defaults.verify} == shipped
    assert defaults.verify_model is None
    from_yaml = load_config(REPO / "config.yaml", env={}).cache
    assert {"similarity_floor": from_yaml.similarity_floor, "verify": from_yaml.verify} == shipped
    configmap = yaml.safe_load((REPO / "deploy/k8s/configmap.yaml").read_text())
    in_cluster = yaml.safe_load(next(v for k, v in configmap["data"].items() if k.endswith(".yaml")))["cache"]
    assert {"similarity_floor": in_cluster["similarity_floor"], "verify": in_cluster["verify"]} == shipped
    assert logistic.load(SHIPPED_MODEL).threshold == report["model"]["threshold"]
