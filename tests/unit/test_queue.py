"""The cluster queue's pure parts: which tiers are bounded, the config that keeps leases alive, and
what a full tier means for an escalation and for the client."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.router.drafting import error_reply, full_reason
from services.router.queue import Bound, TierFull, cluster_bounds
from services.router.upstream import create_tier
from services.router.upstreams.errors import UpstreamConnectError, UpstreamStatusError
from shared.config import ConfigError, UpstreamConfig, load_config

MISSING = Path("/nonexistent/draftgate.yaml")


def test_only_tiers_with_a_cluster_limit_are_bounded() -> None:
    config = load_config(MISSING, env={"DRAFTGATE_HEAVYWEIGHT_CLUSTER_MAX_CONCURRENT": "4",
                                       "DRAFTGATE_HEAVYWEIGHT_QUEUE_TIMEOUT_S": "2.5"})
    assert cluster_bounds(config) == {"heavyweight": Bound(4, 2.5)}
    assert cluster_bounds(load_config(MISSING, env={})) == {}


@pytest.mark.parametrize(("heartbeat", "alive"), [("2", "2"), ("3", "1"), ("0", "5")])
def test_leases_must_outlive_the_refresh_interval(heartbeat: str, alive: str) -> None:
    with pytest.raises(ConfigError, match=r"bus\.router_alive_s"):
        load_config(MISSING, env={"DRAFTGATE_BUS_ROUTER_HEARTBEAT_S": heartbeat, "DRAFTGATE_BUS_ROUTER_ALIVE_S": alive})


def test_a_cluster_limit_below_one_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"heavyweight\.cluster_max_concurrent"):
        load_config(MISSING, env={"DRAFTGATE_HEAVYWEIGHT_CLUSTER_MAX_CONCURRENT": "0"})


def refused_by_pool(status: int) -> UpstreamStatusError:
    """What the pool raises when no deployment could take the call (nothing was sent: no deployment named)."""
    return UpstreamStatusError("no deployment can take the call", tier="heavyweight", status=status)


def test_what_counts_as_full() -> None:
    assert full_reason(TierFull("heavyweight", 5.0)) == "queue_timeout"
    assert full_reason(refused_by_pool(503)) == "unavailable"
    assert full_reason(refused_by_pool(429)) == "rate_limited"
    upstream_429 = UpstreamStatusError("slow down", status=429).at("heavyweight", "heavy-a", "m")
    assert full_reason(upstream_429) == "rate_limited"
    # A deployment that answered 503 or 500 failed; it is not a full tier.
    assert full_reason(UpstreamStatusError("down", status=503).at("heavyweight", "heavy-a", "m")) is None
    assert full_reason(UpstreamConnectError("refused").at("heavyweight", "heavy-a", "m")) is None


def test_a_full_tier_is_a_503_naming_it() -> None:
    tier = create_tier("heavyweight", UpstreamConfig(base_url="http://127.0.0.1:9/v1", model="m"), {})
    for exc in (TierFull("heavyweight", 0.3), refused_by_pool(503)):
        status, body = error_reply(tier, exc)
        assert status == 503 and body["error"]["code"] == "heavyweight_unavailable"
    status, body = error_reply(tier, refused_by_pool(429))
    assert status == 429  # every deployment at its rate limit: the client is told to slow down


def test_tier_full_asks_for_at_least_a_second() -> None:
    assert TierFull("heavyweight", 0.2).retry_after_s == 1.0
    assert TierFull("heavyweight", 5.0).retry_after_s == 5.0
