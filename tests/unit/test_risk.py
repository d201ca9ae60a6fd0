"""The risk policy file: read and checked field by field (a bad file is an error naming it), and
scored as the file says: a standardised logistic model, with the prompt's embedding projected by PCA
when the variant reads it, and trace-only when no embedding came."""

from __future__ import annotations

import asyncio
import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from services.router.policy import RiskRuntime, load_router_policy, resolve, variant_in_use
from services.router.risk import (
    TRACE_ONLY,
    WITH_EMBEDDING,
    PolicyError,
    Projection,
    dump_policy,
    load_policy,
    parse_policy,
    risk,
    sigmoid,
    signals_of,
)
from services.router.signals import DRAFT_SIGNALS, PROMPT_SIGNALS, TokenTrace
from shared.config import ConfigError, load_config


def policy_json() -> dict[str, Any]:
    """risk = sigmoid(2 * (max_entropy - 1) / 0.5 + ...): a small hand-made policy, 3-dimensional embeddings."""
    return {
        "kind": "draftgate-risk-policy", "version": 1, "top_k": 5, "threshold": 0.5,
        "trained_on": {"dataset": "hand-made"},
        "variants": {
            "trace_only": {"features": ["max_entropy", "prompt_digits"], "mean": [1.0, 0.0], "scale": [0.5, 1.0],
                           "coef": [2.0, -1.0], "intercept": 0.25},
            "with_embedding": {"features": ["max_entropy", "emb_0", "emb_1"], "mean": [1.0, 0.0, 0.5],
                               "scale": [0.5, 1.0, 2.0], "coef": [2.0, 3.0, -4.0], "intercept": -1.0,
                               "threshold": 0.4,
                               "embedding": {"components": [[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]],
                                             "center": [0.1, 0.0, 0.0], "model": "all-MiniLM-L6-v2"}}},
        "metrics": {"cv_auroc": 0.8},
    }


def test_trace_only_risk_is_the_standardised_logistic_model() -> None:
    policy = parse_policy(policy_json())
    risk = policy.risk({"max_entropy": 1.5, "prompt_digits": 1.0})
    assert risk.variant == TRACE_ONLY and risk.threshold == 0.5
    assert risk.value == pytest.approx(sigmoid(0.25 + 2.0 * (1.5 - 1.0) / 0.5 - 1.0 * 1.0))
    assert risk.value == pytest.approx(1 / (1 + math.exp(-1.25)))
    assert not risk.accept


def test_with_an_embedding_the_variant_projects_it_and_holds_it_to_its_own_threshold() -> None:
    policy = parse_policy(policy_json())
    vector = [3.0, 0.0, 4.0]  # unit length: 0.6, 0, 0.8
    risk = policy.risk({"max_entropy": 1.0, "prompt_digits": 0.0}, vector)
    emb_0, emb_1 = 0.6 - 0.1, 0.8 * 0.8
    assert risk.variant == WITH_EMBEDDING and risk.threshold == 0.4
    assert risk.value == pytest.approx(sigmoid(-1.0 + 3.0 * emb_0 - 4.0 * (emb_1 - 0.5) / 2.0))
    assert risk.accept == (risk.value <= 0.4)


def test_without_an_embedding_variant_an_embedding_is_ignored() -> None:
    data = policy_json()
    del data["variants"]["with_embedding"]
    policy = parse_policy(data)
    assert policy.with_embedding is None
    assert policy.risk({"max_entropy": 1.0, "prompt_digits": 0.0}, [1.0, 0.0, 0.0]).variant == TRACE_ONLY


def test_risk_at_the_threshold_is_accepted() -> None:
    data = policy_json()
    data["variants"]["trace_only"].update(coef=[0.0, 0.0], intercept=0.0)  # risk 0.5 exactly
    assert parse_policy(data).risk({"max_entropy": 9.0, "prompt_digits": 0.0}).accept


def test_a_projection_checks_the_embeddings_dimensions() -> None:
    with pytest.raises(ValueError, match="3 dimensions for a projection of 2"):
        Projection(((1.0, 0.0),), (0.0, 0.0)).project([1.0, 0.0, 0.0])


def test_signals_of_a_draft_name_every_trace_feature() -> None:
    signals = signals_of([TokenTrace(" a", -0.1, (-0.1, -2.5))], [{"role": "user", "content": "2 + 2?"}])
    assert set(signals) == set(DRAFT_SIGNALS) | set(PROMPT_SIGNALS)


def test_a_policy_survives_the_round_trip_through_its_file(tmp_path: Path) -> None:
    policy = parse_policy(policy_json())
    path = tmp_path / "nested" / "policy.json"
    dump_policy(policy, path)
    again = load_policy(path)
    assert again == policy
    assert json.loads(path.read_text())["variants"]["with_embedding"]["embedding"]["model"] == "all-MiniLM-L6-v2"


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(PolicyError, match=f"cannot read the risk policy {missing}"):
        load_policy(missing)


def test_a_file_that_is_not_json_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text("{not json")
    with pytest.raises(PolicyError, match=f"the risk policy {path} is not JSON"):
        load_policy(path)


def broken(change: str) -> dict[str, Any]:
    data = copy.deepcopy(policy_json())
    trace, embedded = data["variants"]["trace_only"], data["variants"]["with_embedding"]
    match change:
        case "kind":
            data["kind"] = "draftgate.logistic/1"
        case "version":
            data["version"] = 3
        case "v1_names_a_v2_signal":
            trace["features"] = ["max_entropy", "std_entropy"]
        case "threshold":
            data["threshold"] = 1.5
        case "top_k":
            data["top_k"] = 0
        case "no_trace_only":
            del data["variants"]["trace_only"]
        case "unknown_variant":
            data["variants"]["fancy"] = trace
        case "length":
            trace["coef"] = [1.0]
        case "scale":
            trace["scale"] = [0.0, 1.0]
        case "nan":
            trace["intercept"] = float("nan")
        case "unknown_feature":
            trace["features"] = ["max_entropy", "vibes"]
        case "missing_field":
            del trace["intercept"]
        case "embedding_in_trace_only":
            trace["features"] = ["max_entropy", "emb_0"]
        case "embedding_features":
            embedded["features"] = ["max_entropy", "emb_0", "emb_5"]
        case "unread_component":
            embedded.update(features=["max_entropy", "emb_0"], mean=[0.0, 0.0], scale=[1.0, 1.0], coef=[1.0, 1.0])
        case "no_projection":
            del embedded["embedding"]
        case "ragged_components":
            embedded["embedding"]["components"] = [[1.0, 0.0, 0.0], [1.0]]
        case "string_number":
            trace["mean"] = ["1.0", 0.0]
    return data


@pytest.mark.parametrize(("change", "says"), [
    ("kind", "'kind' must be"), ("version", "version 3 is unknown (this draftgate reads versions 1, 2"),
    ("v1_names_a_v2_signal", "unknown feature 'std_entropy'"), ("threshold", "threshold must be between 0 and 1"),
    ("top_k", "top_k must be an integer from 1 to 20"), ("no_trace_only", "at least 'trace_only'"),
    ("unknown_variant", "unknown variant 'fancy'"), ("length", "one equal, non-zero length"),
    ("scale", "every scale must be > 0"), ("nan", "finite number"), ("unknown_feature", "unknown feature 'vibes'"),
    ("missing_field", "missing field 'intercept'"), ("embedding_in_trace_only", "unknown feature 'emb_0'"),
    ("embedding_features", "unknown feature 'emb_5'"), ("unread_component", "every component of its projection"),
    ("no_projection", "needs an 'embedding' projection"),
    ("ragged_components", "rows as long as center"), ("string_number", "finite number, got '1.0'"),
])
def test_a_malformed_policy_is_an_error_naming_the_file_and_the_field(change: str, says: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(broken(change)))
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert str(path) in str(raised.value)
    assert says in str(raised.value)


def test_a_version_2_policy_reads_the_signals_version_2_added() -> None:
    data = policy_json()
    data["version"] = 2
    data["variants"]["trace_only"].update(features=["max_entropy", "std_entropy"])
    policy = parse_policy(data)
    assert policy.risk({"max_entropy": 1.0, "std_entropy": 1.0}).value == pytest.approx(sigmoid(0.25 - 1.0))


def test_the_shipped_policy_loads() -> None:
    policy = load_policy(resolve("services/router/policies/smollm2.json"))
    assert policy.with_embedding is not None and policy.trace_only.features


def test_a_recorded_draft_is_scored_at_the_policys_k() -> None:
    """Recorded with 4 alternatives, scored with the policy's 2: 1 bit, not 2."""
    data = policy_json()
    data["top_k"] = 2
    policy = parse_policy(data)
    quarter = math.log(0.25)
    tokens = [TokenTrace(" a", quarter, (quarter,) * 4)]
    scored = risk(policy, tokens, [{"role": "user", "content": "hi"}])
    assert scored == policy.risk({"max_entropy": 1.0, "prompt_digits": 0.0})


def test_the_learned_policy_needs_a_risk_model_in_the_config(tmp_path: Path) -> None:
    empty = tmp_path / "config.yaml"
    with pytest.raises(ConfigError, match=r"routing\.risk_model: must name a policy file"):
        load_config(empty, {"DRAFTGATE_ROUTING_POLICY": "learned"})
    with pytest.raises(ConfigError, match=r"routing\.policy: must be one of 'entropy', 'learned'"):
        load_config(empty, {"DRAFTGATE_ROUTING_POLICY": "vibes"})
    config = load_config(empty, {"DRAFTGATE_ROUTING_POLICY": "learned", "DRAFTGATE_ROUTING_RISK_MODEL": "p.json"})
    assert (config.routing.policy, config.routing.risk_model) == ("learned", "p.json")
    assert load_config(empty, {}).routing.policy == "entropy"


# The router's side (services/router/policy.py): a draft's risk kept chunk by chunk, the embedding
# used only when it has arrived.

def chunk_of(bits: list[float]) -> dict[str, Any]:
    """A streamed chunk whose tokens have these entropies over two alternatives (p, 1 - p)."""
    entries = []
    for b in bits:
        p = p_for(b)
        entries.append({"token": " w", "logprob": math.log(p),
                        "top_logprobs": [{"token": " w", "logprob": math.log(p)},
                                         {"token": " v", "logprob": math.log(1 - p) if p < 1 else None}]})
    return {"choices": [{"index": 0, "delta": {"content": " w" * len(bits)}, "logprobs": {"content": entries}}]}


def entropy2(p: float) -> float:
    return 0.0 if p >= 1 else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def p_for(bits: float) -> float:
    """The chosen token's probability, of two, whose entropy is about `bits` (at most 1)."""
    return next(x / 1000 for x in range(500, 1001) if entropy2(x / 1000) <= bits + 1e-3)


def runtime(embed: Any = None) -> RiskRuntime:
    return RiskRuntime(parse_policy(policy_json()), embed)


MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


def test_a_drafts_risk_follows_its_chunks() -> None:
    async def scenario() -> None:
        draft = runtime().start(MESSAGES)
        draft.add(chunk_of([0.1, 0.2]))
        early = draft.partial()
        draft.add(chunk_of([0.9]))
        later = draft.final()
        assert later == runtime().policy.risk({"max_entropy": entropy2(p_for(0.9)), "prompt_digits": 1.0})
        assert early.value < later.value and later.variant == TRACE_ONLY
        await draft.close()

    asyncio.run(scenario())


def test_the_embedding_is_used_once_it_has_arrived_and_not_waited_for() -> None:
    async def scenario() -> None:
        arrived = asyncio.Event()

        async def quick(text: str) -> list[float]:
            assert text == "What is 2 + 2?"
            arrived.set()
            return [3.0, 0.0, 4.0]

        draft = runtime(quick).start(MESSAGES)
        draft.add(chunk_of([0.1]))
        await arrived.wait()
        await asyncio.sleep(0)  # the fetch's task finishes
        assert draft.final().variant == WITH_EMBEDDING
        await draft.close()

        never = asyncio.Event()

        async def hanging(text: str) -> list[float]:
            await never.wait()
            return [1.0, 0.0, 0.0]

        draft = runtime(hanging).start(MESSAGES)
        draft.add(chunk_of([0.1]))
        assert draft.final().variant == TRACE_ONLY
        task = draft._embedding
        await draft.close()
        assert task is not None and task.cancelled()

    asyncio.run(scenario())


def test_a_failed_embedding_falls_back_to_trace_only_and_warns() -> None:
    async def failing(text: str) -> list[float]:
        raise OSError("connection refused")

    async def scenario() -> list[str]:
        shared = runtime(failing)
        variants = []
        for _ in range(3):
            draft = shared.start(MESSAGES)
            await asyncio.sleep(0.01)
            variants.append(draft.final().variant)
            await draft.close()
        assert shared._warned
        return variants

    assert asyncio.run(scenario()) == [TRACE_ONLY] * 3


def test_the_embedding_variant_is_off_when_the_embedder_serves_another_model() -> None:
    policy = parse_policy(policy_json())
    assert variant_in_use(policy, "all-MiniLM-L6-v2") == WITH_EMBEDDING
    assert variant_in_use(policy, "text-embedding-3-small") == TRACE_ONLY
    data = policy_json()
    del data["variants"]["with_embedding"]
    assert variant_in_use(parse_policy(data), "all-MiniLM-L6-v2") == TRACE_ONLY


def test_the_router_loads_the_configured_policy_or_refuses_naming_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "config.yaml"
    assert load_router_policy(load_config(empty, {})) is None
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy_json()))
    env = {"DRAFTGATE_ROUTING_POLICY": "learned", "DRAFTGATE_ROUTING_RISK_MODEL": str(path)}
    assert load_router_policy(load_config(empty, env)) == parse_policy(policy_json())
    with pytest.raises(ConfigError, match=r"routing\.risk_model: .*top_logprobs asks the drafter for 3"):
        load_router_policy(load_config(empty, {**env, "DRAFTGATE_ROUTING_TOP_LOGPROBS": "3"}))
    missing = {**env, "DRAFTGATE_ROUTING_RISK_MODEL": str(tmp_path / "none.json")}
    with pytest.raises(ConfigError, match="cannot read the risk policy"):
        load_router_policy(load_config(empty, missing))


def test_a_relative_policy_path_is_found_from_the_repository() -> None:
    assert resolve("services/router/risk.py").exists()
    assert resolve("/abs/none.json") == Path("/abs/none.json")
    assert resolve("no/such/policy.json") == Path("no/such/policy.json")
