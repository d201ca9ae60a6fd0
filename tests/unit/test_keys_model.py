"""Virtual keys' pure parts: a new key's settings validated (a 400 naming the field), the record's
round trip through Redis's strings, who a bearer token says the caller is, the names a request goes
by, the budgets' UTC periods, and OpenAI's rate-limit headers."""

from __future__ import annotations

import datetime

import pytest

from services.gateway.auth import KeyLimits, KeyLookup, Principal, identify, key_digest, key_hash, virtual_key_id
from services.gateway.keys.model import KeySpec, VirtualKey, make_key, parse_duration, parse_spec, period_ends, periods
from services.gateway.limits import charge, route_targets
from services.gateway.limits_reply import duration, rate_limit_headers
from shared.config import load_config
from shared.errors import AuthenticationFailed, InvalidRequest
from shared.messages import Account, UpstreamCall

NOW = 1_764_000_000.0  # 2025-11-24 16:00:00 UTC
KNOWN = ["auto", "drafter", "heavyweight", "gpt-4.1-nano", "gpt-4.1", "small-a"]


def test_a_full_spec_is_parsed_and_models_are_kept_in_order_once() -> None:
    spec = parse_spec({"tenant": "acme", "name": "ci", "models": ["drafter", "small-a", "drafter"], "rpm": 60,
                       "tpm": 10_000, "budget_usd_day": 5, "budget_usd_month": 100.5, "expires_in": "30d"}, KNOWN, NOW)
    assert spec == KeySpec(tenant="acme", name="ci", models=("drafter", "small-a"),
                           limits=KeyLimits(rpm=60, tpm=10_000, budget_usd_day=5.0, budget_usd_month=100.5),
                           expires_at=NOW + 30 * 86400)
    assert parse_spec({}, KNOWN, NOW) == KeySpec()
    assert parse_spec({"expires_at": "2026-01-01T00:00:00Z"}, KNOWN, NOW).expires_at == datetime.datetime(
        2026, 1, 1, tzinfo=datetime.UTC).timestamp()
    assert parse_spec({"expires_at": "2026-01-01T00:00:00"}, KNOWN, NOW).expires_at == datetime.datetime(
        2026, 1, 1, tzinfo=datetime.UTC).timestamp()  # no zone: UTC


@pytest.mark.parametrize(("body", "param"), [
    ({"rpm": 0}, "rpm"), ({"rpm": 1.5}, "rpm"), ({"tpm": True}, "tpm"), ({"budget_usd_day": -1}, "budget_usd_day"),
    ({"budget_usd_month": "5"}, "budget_usd_month"), ({"models": "drafter"}, "models"),
    ({"models": ["drafter", "gpt-5"]}, "models[1]"), ({"tenant": "a b"}, "tenant"), ({"name": "x" * 200}, "name"),
    ({"expires_at": NOW - 1}, "expires_at"), ({"expires_at": "yesterday"}, "expires_at"),
    ({"expires_in": "soon"}, "expires_in"), ({"expires_in": 0}, "expires_in"),
    ({"expires_in": 60, "expires_at": NOW + 60}, "expires_in"), ({"owner": "bob"}, "owner"),
])
def test_a_bad_setting_is_a_400_naming_it(body: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_spec(body, KNOWN, NOW)
    assert caught.value.param == param and caught.value.status == 400


def test_a_body_that_is_no_object_is_a_400() -> None:
    with pytest.raises(InvalidRequest):
        parse_spec(["rpm"], KNOWN, NOW)


@pytest.mark.parametrize(("text", "seconds"), [(3600, 3600), ("90s", 90), ("15m", 900), ("12h", 43200),
                                               ("1.5d", 129600), ("2w", 1209600), ("45", 45)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "expires_in") == seconds


def test_a_key_is_random_its_record_holds_no_secret_and_survives_redis_strings() -> None:
    spec = KeySpec(tenant="acme", models=("auto",), limits=KeyLimits(rpm=5, budget_usd_month=2.5), expires_at=NOW + 1)
    key, secret = make_key(spec, NOW)
    other, other_secret = make_key(spec, NOW)
    assert secret.startswith("sk-dg-") and len(secret) > 40 and secret != other_secret and key.id != other.id
    assert key.digest == key_digest(secret) and key.id == virtual_key_id(key.digest)
    stored = key.to_redis()
    assert secret not in "".join(stored.values())
    as_redis = {name.encode(): value.encode() for name, value in stored.items()}  # what HGETALL gives back
    assert VirtualKey.from_redis(key.digest, as_redis) == key
    shown = key.public(0.25, 1.0, NOW)
    assert shown["status"] == "active" and "key" not in shown and shown["spend_usd_month"] == 1.0
    assert key.public(now=NOW + 2)["status"] == "expired"
    assert make_key(KeySpec(), NOW)[0].tenant.startswith("vk_")  # no tenant: the key is its own


def headers(token: str | None, tenant: str | None = None) -> dict[str, str]:
    found = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return {**found, **({"X-Tenant-ID": tenant} if tenant else {})}


def test_static_keys_are_settled_without_redis_and_other_tokens_are_401s_in_keyed_mode() -> None:
    static = frozenset({"static-key-1"})
    assert identify(headers("static-key-1"), static, True) == Principal(key_hash("static-key-1"),
                                                                       key_hash("static-key-1"))
    for token in ("not-a-key", None):
        with pytest.raises(AuthenticationFailed):
            identify(headers(token), static, True)
    found = identify(headers("sk-dg-abc", "team"), static, True)
    assert isinstance(found, KeyLookup) and found.key_id == virtual_key_id(key_digest("sk-dg-abc"))
    assert (found.sub_tenant, found.open) == ("team", False)
    with pytest.raises(AuthenticationFailed):  # virtual keys off: an sk-dg- token is just an unknown key
        identify(headers("sk-dg-abc"), static, False)


def test_open_mode_asks_redis_whether_keys_exist_unless_virtual_keys_are_off() -> None:
    found = identify(headers("anything"), frozenset(), True)
    assert isinstance(found, KeyLookup) and found.open and found.anonymous_tenant == key_hash("anything")
    assert not found.virtual  # no virtual key looks so: the gateway's memory of whether keys exist may answer
    keyed = identify(headers("sk-dg-abc"), frozenset(), True)
    assert isinstance(keyed, KeyLookup) and keyed.virtual and keyed.open
    assert identify(headers("anything"), frozenset(), False) == Principal("", key_hash("anything"))
    assert identify(headers(None), frozenset(), False) == Principal("", "")


def test_a_request_goes_by_its_tier_the_tiers_model_and_its_deployment() -> None:
    config = load_config(env={"DRAFTGATE_DRAFTER_MODEL": "small", "DRAFTGATE_HEAVYWEIGHT_MODEL": "big"})
    assert route_targets("auto", "", config) == ("auto",)
    assert route_targets("drafter", "", config) == ("drafter", "small")
    assert route_targets("heavyweight", "big-eu", config) == ("heavyweight", "big", "big-eu")


def test_the_budget_periods_are_utc_days_and_months() -> None:
    assert periods(NOW) == ("2025-11-24", "2025-11")
    day_end, month_end = period_ends(NOW)
    assert day_end == datetime.datetime(2025, 11, 25, tzinfo=datetime.UTC).timestamp()
    assert month_end == datetime.datetime(2025, 12, 1, tzinfo=datetime.UTC).timestamp()
    assert period_ends(datetime.datetime(2025, 12, 31, 23, 59, tzinfo=datetime.UTC).timestamp())[1] == \
        datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp()


def test_an_answer_charges_every_upstream_calls_tokens_and_its_cost() -> None:
    calls = (UpstreamCall("drafter", "small-a", "small", 100, 20, "aborted_draft", 0.001),
             UpstreamCall("heavyweight", "big", "big", 100, 50, "answer", None))
    assert charge(Account(calls, cost_usd=0.004, baseline_usd=0.004)) == (270, 0.004)
    assert charge(Account(calls, cost_usd=None)) == (270, 0.001)  # unpriced: what is priced
    assert charge(None) == (0, 0.0)  # a cache hit, or a refusal: nothing


def test_rate_limit_headers_as_openai_names_them() -> None:
    principal = Principal("vk_1", "acme", True, KeyLimits(rpm=60, tpm=1000), used_requests=1, used_tokens=250)
    assert rate_limit_headers(principal) == {
        "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "750", "x-ratelimit-reset-tokens": "15s"}
    assert rate_limit_headers(Principal("vk_1", "acme", True, KeyLimits(budget_usd_day=1))) == {}
    assert [duration(s) for s in (0.02, 1.5, 59.9991, 60, 360, 3723)] == ["20ms", "1.5s", "60s", "1m0s", "6m0s",
                                                                          "1h2m3s"]

