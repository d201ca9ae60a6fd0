"""`python -m services.router.calibrate cache-pairs` end to end on a subset of the dataset, with the real
MiniLM through the embedder's backend factory, writing into tmp_path only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.cache.verify import build_verifier
from services.router import calibrate
from services.router.calibration.cache_pairs.pairs import DATASET
from shared.config import load_config

REPO = Path(__file__).resolve().parents[2]


def subset(path: Path, per_split: int = 8) -> None:
    """Whole families, the first few of each split in file order: a small run of the real thing."""
    rows = [json.loads(line) for line in DATASET.read_text().splitlines()]
    keep: dict[str, list[str]] = {"train": [], "test": []}
    for row in rows:
        families = keep[row["split"]]
        if row["family"] not in families and len(families) < per_split:
            families.append(row["family"])
    chosen = {f for families in keep.values() for f in families}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["family"] in chosen))


def test_cache_pairs_writes_the_model_the_report_the_plot_and_the_config(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    data, config, out, model = tmp_path / "pairs.jsonl", tmp_path / "config.yaml", tmp_path / "out", tmp_path / "m.json"
    subset(data)
    shutil.copy(REPO / "config.yaml", config)
    config.write_text(config.read_text().replace("similarity_floor: 0.85 ", "similarity_floor: 0.5  "))
    before = config.read_text()

    status = calibrate.main(["cache-pairs", "--data", str(data), "--config", str(config), "--out", str(out),
                             "--model", str(model), "--quiet"])

    assert status == 0
    report = json.loads((out / "cache_pairs.json").read_text())
    chosen = report["chosen"]
    assert chosen["wrong_hits"] == 0 and chosen["precision"] >= 0.995
    for point in report["sweep"]:  # the numbers agree with each other
        assert point["hits"] == point["paraphrase_hits"] + point["wrong_hits"]
        assert point["precision"] == pytest.approx(point["paraphrase_hits"] / point["hits"] if point["hits"] else 1,
                                                   abs=1e-4)
        assert point["recall"] == pytest.approx(point["paraphrase_hits"] / point["paraphrases"], abs=1e-4)
        assert point["paraphrases"] == report["dataset"]["test_paraphrases"]
    floors = {p["floor"] for p in report["sweep"]}
    assert {0.5, 0.85, 0.99} <= floors
    assert (out / "cache_pairs_pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert build_verifier("learned", model).name == "learned"

    written = load_config(config, env={}).cache
    assert (written.similarity_floor, written.verify, written.verify_model) == (chosen["floor"], chosen["verifier"],
                                                                                str(model))
    changed = [line for line in config.read_text().splitlines() if line not in before.splitlines()]
    assert all(line.strip().startswith(("similarity_floor:", "verify:", "verify_model:")) for line in changed)
    assert "# semantic candidates: the nearest entries" in config.read_text()  # comments kept
    assert f"chosen: verify={chosen['verifier']}" in capsys.readouterr().out


def test_the_help_explains_the_step() -> None:
    result = subprocess.run([sys.executable, "-m", "services.router.calibrate", "cache-pairs", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=True)
    assert "precision" in result.stdout and "--config" in result.stdout and "operating point" in result.stdout
