"""The cache verifiers: rules on hand-written pairs of every class, the learned model, building them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from services.cache import logistic
from services.cache.normalise import semantic_form
from services.cache.pair_features import FEATURES, veto
from services.cache.reading import read
from services.cache.verify import REASONS, SHIPPED_MODEL, LearnedVerifier, RulesVerifier, build_verifier
from services.router.calibration.cache_pairs import pairs
from services.router.calibration.cache_pairs.fit import fit_model

# (query, cached, the reason the rules give): two requests that need different answers.
NEAR_MISSES = [
    ("Summarize the status of order #4411", "Summarize the status of order #4412", "number"),
    ("What's the total on invoice 4,411.50?", "What's the total on invoice 4,411.05?", "number"),
    ("What happened in Berlin in 1989?", "What happened in Berlin in 1991?", "number"),
    ("Give me two examples of irony", "Give me 3 examples of irony", "number"),
    ("Is flight BA117 on time?", "Is flight BA118 on time?", "identifier"),
    ("What's new in Python 3.12?", "What's new in Python 3.13?", "number"),
    ('Translate "good night" into German', 'Translate "good morning" into German', "quoted"),
    ("What does `os.path.join` do?", "What does `os.path.split` do?", "code"),
    ("Why is userId undefined in my code?", "Why is userID undefined in my code?", "code"),
    ("How do I select rows where deleted_at is null?", "How do I select rows where created_at is null?", "code"),
    ("Summarize https://example.com/a/41", "Summarize https://example.com/a/42", "url"),
    ("Draft a reply to anna@example.com", "Draft a reply to ben@example.com", "email"),
    ("What is the capital of Japan?", "What is the capital of China?", "entity"),
    ("what is the capital of france", "what is the capital of spain", "entity"),
    ("How do I deploy to AWS?", "How do I deploy to GCP?", "entity"),
    ("Which fruits are safe for dogs to eat?", "Which fruits are not safe for dogs to eat?", "negation"),
    ("Why doesn't my build start?", "Why does my build start?", "negation"),
    ("How do I install numpy without pip?", "How do I install numpy with pip?", "negation"),
    ("Is coffee good for your health?", "Is coffee bad for your health?", "antonym"),
    ("How do I increase the font size in Word?", "How do I decrease the font size in Word?", "antonym"),
    ("What should I eat before a marathon?", "What should I eat after a marathon?", "antonym"),
    ("How do I enable dark mode?", "How do I disable dark mode?", "antonym"),
    ("How do I sort a dict by value in descending order?", "How do I sort a dict by value?", "antonym"),
    ("What's the weather in Oslo today?", "What's the weather in Oslo tomorrow?", "antonym"),
    ("Convert 100 miles to kilometers", "Convert 100 kilometers to miles", "order"),
    ("Translate hello from English to French", "Translate hello from French to English", "order"),
    ("Can I use butter instead of oil when baking?", "Can I use oil instead of butter when baking?", "order"),
    ("Is 7 greater than 5?", "Is 5 greater than 7?", "order"),
    ("What time is it in Tokyo when it's 3pm in Paris?", "What time is it in Paris when it's 3pm in Tokyo?",
     "order"),
    ("How do I convert JSON to CSV?", "How do I turn CSV into JSON?", "order"),
    ("Convert 100 miles to kilometers", "Convert 100 miles to meters", "unit"),
    ("How do I reverse a list in Python?", "How do I reverse a list in Rust?", "language"),
    ("Translate good morning into French", "Translate good morning into Spanish", "language"),
    ("How do I free memory in C?", "How do I free memory in Go?", "language"),
    ("What is 12 plus 7?", "What is 12 minus 7?", "operator"),
    ("Select users with age > 30", "Select users with age < 30", "operator"),
    ("Select users whose age is greater than 30", "Select users with age < 30", "operator"),
    ("Which numbers up to 50 are divisible by 3 and 5?", "Which numbers up to 50 are divisible by 3 or 5?",
     "operator"),
    ("When was Google founded?", "Where was Google founded?", "question"),
    ("Where was Einstein born?", "What is the birth date of Einstein?", "question"),
]

# (query, cached): the same request worded differently; the rules must let them through.
PARAPHRASES = [
    ("Why is the sky blue?", "What makes the sky look blue?"),  # reworded
    ("How do I reverse a list in Python?", "In Python, how can I reverse a list?"),  # reordered
    ("Which numbers from 1 to 50 are divisible by 3?", "From 1 to 50, which numbers can be divided by 3?"),
    ("How do I fix a broken pipe?", "How do I repair a broken pipe?"),  # synonyms
    ("Is 7 larger than 5?", "Is 7 bigger than 5?"),
    ("What's the capital of Japan?", "What is the capital of Japan"),  # contractions
    ("Why doesn't my build start?", "Why does my build not start?"),
    ("What is the capital of Japan?", "Which city is Japan's capital?"),  # question form
    ("When was Google founded?", "In what year was Google founded?"),
    ("Summarize the status of order #4,411", "What's the status of order 4411?"),  # number spellings
    ("Convert 100 km to miles", "Convert 100 kilometres to miles"),
    ("Convert $20 to euros", "Convert 20 dollars to euros"),
    ("How many kilometers are in 100 miles?", "Convert 100 miles to kilometers"),
    ("What is 20% of 50?", "What is 20 percent of 50?"),
    ("How do I undo the last two commits in Git?", "How do I undo the last 2 commits in git?"),
    ("What is the difference between TCP and UDP?", "What is the difference between UDP and TCP?"),  # symmetric
    ("What time is it in New York when it's 9am in London?", "If it's 9am in London, what time is it in New York?"),
    ("Do I need a visa to travel from India to France?", "Traveling from India to France: do I need a visa?"),
    ('What does the error "file not found" mean?', "Explain the error message 'file not found'"),
    ("How do I use `os.path.join`?", "How is os.path.join used?"),
    ("How do I set up JavaScript linting?", "how do i set up javascript linting"),
]


def semantic(text: str) -> str:
    form = semantic_form(text)
    assert form is not None
    return form


@pytest.mark.parametrize(("query", "cached", "reason"), NEAR_MISSES)
def test_rules_reject_a_near_miss_of_every_class_in_both_directions(query: str, cached: str, reason: str) -> None:
    rules = RulesVerifier()
    assert rules.check(semantic(query), semantic(cached), 0.99).reason == reason
    assert rules.check(semantic(cached), semantic(query), 0.99).reason == reason
    assert reason in REASONS


@pytest.mark.parametrize(("query", "cached"), PARAPHRASES)
def test_rules_pass_paraphrases_of_every_class_in_both_directions(query: str, cached: str) -> None:
    rules = RulesVerifier()
    assert rules.check(semantic(query), semantic(cached), 0.9).passed
    assert rules.check(semantic(cached), semantic(query), 0.9).passed


def test_a_candidate_without_text_is_never_served() -> None:
    for verifier in (build_verifier("rules"), build_verifier("learned")):
        verdict = verifier.check("What is the capital of Japan", None, 1.0)
        assert (verdict.passed, verdict.reason) == (False, "no_text")
        assert verifier.check("What is the capital of Japan", "", 1.0).reason == "no_text"


def test_the_shipped_learned_verifier_passes_clear_paraphrases_and_refuses_weak_similarity() -> None:
    learned = build_verifier("learned")
    assert learned.name == "learned"
    assert learned.check("Which city is Japan's capital", "What is the capital of Japan", 0.96).passed
    low = learned.check("What is the boiling point of water", "What is the boiling point of ethanol", 0.60)
    assert (low.passed, low.reason) == (False, "learned")  # lowercase substances: the model, not a rule
    weak = learned.check("How much revenue did IKEA make", "What was IKEA's profit", 0.55)
    assert (weak.passed, weak.reason) == (False, "learned")


def test_learned_is_never_less_strict_than_rules_on_the_dataset() -> None:
    rules, learned = RulesVerifier(), build_verifier("learned")
    for pair in pairs.load():
        if learned.check(pair.query, pair.cached, 1.0).passed:
            assert rules.check(pair.query, pair.cached, 1.0).passed, pair


def test_every_veto_reason_is_a_declared_metric_label() -> None:
    seen = {veto(read(semantic(q)), read(semantic(c))) for q, c, _ in NEAR_MISSES}
    assert seen <= set(REASONS)
    assert len(REASONS) == len(set(REASONS)) and "passed" not in REASONS


def synthetic(rng: random.Random, count: int) -> tuple[list[list[float]], list[bool]]:
    """Paraphrases: high cosine, high overlap, few unmatched words; near misses the other way, overlapping."""
    rows, labels = [], []
    for _ in range(count):
        same = rng.random() < 0.5
        centre = [0.9, 0.7, 1.0, 0.5] if same else [0.8, 0.45, 2.5, 1.5]
        rows.append([rng.gauss(mu, 0.06 if i == 0 else 0.25) for i, mu in enumerate(centre)])
        labels.append(same)
    return rows, labels


def test_the_learned_model_recovers_the_separation_of_synthetic_data() -> None:
    rng = random.Random(7)
    train_x, train_y = synthetic(rng, 400)
    test_x, test_y = synthetic(rng, 400)
    model = fit_model(train_x, train_y, names=("cosine", "overlap", "unmatched", "length"))
    accuracy = sum((model.probability(x) >= 0.5) == y for x, y in zip(test_x, test_y, strict=True)) / len(test_y)
    assert accuracy >= 0.95
    assert model.coefficients[0] > 0 and model.coefficients[2] < 0  # more cosine helps, unmatched words hurt


def test_model_json_round_trip_scores_the_same(tmp_path: Path) -> None:
    rng = random.Random(3)
    x, y = synthetic(rng, 100)
    model = fit_model(x, y, threshold=0.7, names=("a", "b", "c", "d"), about={"note": "synthetic"})
    path = tmp_path / "model.json"
    logistic.dump(model, path)
    again = logistic.load(path)
    assert again == model
    assert [again.probability(row) for row in x[:20]] == [model.probability(row) for row in x[:20]]
    assert json.loads(path.read_text())["format"] == logistic.FORMAT  # plain JSON, no pickle


def test_build_verifier_refuses_unknown_kinds_and_bad_models(tmp_path: Path) -> None:
    assert build_verifier("rules").name == "rules"
    assert build_verifier("learned", SHIPPED_MODEL).name == "learned"
    with pytest.raises(ValueError, match=r"cache\.verify"):
        build_verifier("cosine")
    with pytest.raises(ValueError, match="cannot read"):
        build_verifier("learned", tmp_path / "missing.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        build_verifier("learned", garbage)
    other_format = tmp_path / "other.json"
    other_format.write_text(json.dumps({"format": "pickle", "coefficients": [1]}))
    with pytest.raises(ValueError, match="not a"):
        build_verifier("learned", other_format)
    stale = tmp_path / "stale.json"
    logistic.dump(fit_model(*synthetic(random.Random(1), 50), names=("a", "b", "c", "d")), stale)
    with pytest.raises(ValueError, match="refit"):
        build_verifier("learned", stale)


def test_a_model_with_mismatched_lengths_is_refused() -> None:
    with pytest.raises(ValueError, match="equal length"):
        logistic.LogisticModel(FEATURES, (0.0,), (1.0,), (1.0,), 0.0, 0.5)
    with pytest.raises(ValueError, match="probability"):
        logistic.LogisticModel(("a",), (0.0,), (1.0,), (1.0,), 0.0, 1.5)


def test_learned_verifier_needs_this_versions_features() -> None:
    model = logistic.load(SHIPPED_MODEL)
    assert model.features == FEATURES
    assert isinstance(build_verifier("learned"), LearnedVerifier)
