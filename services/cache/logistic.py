"""A logistic model as plain JSON (feature names, scaler, coefficients, intercept, threshold): no pickles.

scikit-learn fits it at calibration time (services/router/calibration/cache_pairs/fit.py); at run time scoring is a
dot product, so the cache service needs neither scikit-learn nor numpy for it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "draftgate.logistic/1"


@dataclass(frozen=True, slots=True)
class LogisticModel:
    features: tuple[str, ...]
    mean: tuple[float, ...]  # standardisation: x' = (x - mean) / scale
    scale: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float
    threshold: float  # a probability at or above it passes
    about: dict[str, Any] = field(default_factory=dict)  # how it was fitted: data, split, scores

    def __post_init__(self) -> None:
        sizes = {len(self.features), len(self.mean), len(self.scale), len(self.coefficients)}
        if len(sizes) != 1 or not self.features:
            raise ValueError("logistic model: features, mean, scale and coefficients must have one equal length")
        if any(s <= 0 or not math.isfinite(s) for s in self.scale):
            raise ValueError("logistic model: every scale must be a positive number")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"logistic model: threshold {self.threshold} is not a probability")

    def probability(self, values: Sequence[float]) -> float:
        z = self.intercept + sum(c * (v - m) / s for c, v, m, s in
                                 zip(self.coefficients, values, self.mean, self.scale, strict=True))
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def passes(self, values: Sequence[float]) -> bool:
        return self.probability(values) >= self.threshold

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any) -> LogisticModel:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} model")
        try:
            return cls(features=tuple(str(f) for f in data["features"]),
                       mean=tuple(float(v) for v in data["mean"]), scale=tuple(float(v) for v in data["scale"]),
                       coefficients=tuple(float(v) for v in data["coefficients"]),
                       intercept=float(data["intercept"]), threshold=float(data["threshold"]),
                       about=dict(data.get("about") or {}))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"logistic model: missing or malformed field ({exc})") from exc


def load(path: str | Path) -> LogisticModel:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the verifier model {path}: {exc}") from exc
    return LogisticModel.from_json(data)


def dump(model: LogisticModel, path: str | Path) -> None:
    Path(path).write_text(json.dumps(model.to_json(), indent=2) + "\n")
