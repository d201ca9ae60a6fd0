"""Prices per tier: published list prices, the local tiers' stand-ins, explicit config, validation."""

from __future__ import annotations

import pytest

from shared.config import ConfigError, load_config
from shared.pricing import Price


def test_a_call_costs_its_tokens_at_the_per_million_prices() -> None:
    assert Price(2.0, 8.0).cost(1_000, 500) == pytest.approx((1_000 * 2.0 + 500 * 8.0) / 1e6)
    assert Price(0.0, 0.0).cost(10**9, 10**9) == 0.0


def test_openai_defaults_take_the_published_prices(tmp_path) -> None:
    config = load_config(tmp_path / "none.yaml", env={"OPENAI_API_KEY": "sk-x"})
    assert config.drafter.price == Price(0.10, 0.40) and config.heavyweight.price == Price(2.00, 8.00)


def test_the_local_tiers_are_priced_as_the_nano_and_41_pair(tmp_path) -> None:
    config = load_config(tmp_path / "none.yaml", env={})
    assert config.drafter.model == "smollm2"
    assert config.drafter.price == Price(0.10, 0.40) and config.heavyweight.price == Price(2.00, 8.00)


def test_an_unknown_model_is_unpriced_until_the_config_prices_it(tmp_path) -> None:
    env = {"DRAFTGATE_DRAFTER_BASE_URL": "http://vllm:8000/v1", "DRAFTGATE_DRAFTER_MODEL": "qwen"}
    assert load_config(tmp_path / "none.yaml", env=env).drafter.price is None
    env |= {"DRAFTGATE_DRAFTER_INPUT_USD_PER_MTOK": "0.05", "DRAFTGATE_DRAFTER_OUTPUT_USD_PER_MTOK": "0.2"}
    assert load_config(tmp_path / "none.yaml", env=env).drafter.price == Price(0.05, 0.2)


def test_one_price_overridden_keeps_the_other_published(tmp_path) -> None:
    env = {"OPENAI_API_KEY": "sk-x", "DRAFTGATE_HEAVYWEIGHT_OUTPUT_USD_PER_MTOK": "6"}
    assert load_config(tmp_path / "none.yaml", env=env).heavyweight.price == Price(2.00, 6.0)


def test_a_negative_price_names_the_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"heavyweight\.input_usd_per_mtok: must be >= 0"):
        load_config(tmp_path / "none.yaml", env={"DRAFTGATE_HEAVYWEIGHT_INPUT_USD_PER_MTOK": "-1"})
