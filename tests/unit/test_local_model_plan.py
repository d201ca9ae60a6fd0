"""What `make run` decides to start and tells the user, from the config alone."""

from __future__ import annotations

from pathlib import Path

from scripts.local_model import LocalEndpoint, local_endpoints
from scripts.plan import (
    RedisTarget,
    banner,
    gateway_url,
    model_processes,
    redis_process,
    redis_target,
    service_processes,
)
from shared.config import load_config


def config_with(tmp_path: Path, **env: str):
    return load_config(tmp_path / "absent.yaml", env=env)


def test_only_a_local_plain_redis_url_is_ours_to_start():
    assert redis_target("redis://127.0.0.1:6390/0") == RedisTarget("127.0.0.1", 6390)
    assert redis_target("redis://localhost/0") == RedisTarget("localhost", 6379)
    assert redis_target("redis://redis.internal:6379/0") is None
    assert redis_target("rediss://127.0.0.1:6379/0") is None
    assert redis_target("unix:///tmp/redis.sock") is None


def test_the_started_redis_persists_nothing(tmp_path: Path):
    spec = redis_process("/usr/bin/redis-server", RedisTarget("127.0.0.1", 6390), tmp_path)
    expected = f"exec /usr/bin/redis-server --bind 127.0.0.1 --port 6390 --save '' --appendonly no --dir {tmp_path}"
    assert spec.shell == expected


def test_local_mode_starts_one_model_server_that_is_ready_when_it_lists_models(tmp_path: Path):
    specs = model_processes("py", local_endpoints(config_with(tmp_path)))
    assert [(s.name, s.command, s.ready_url) for s in specs] == [
        ("model", ["py", "-m", "scripts.local_model", "--tier", "drafter"], "http://127.0.0.1:8090/v1/models")]


def test_two_local_ports_get_two_model_servers():
    endpoints = [LocalEndpoint("127.0.0.1", 8090, "a", ("drafter",)),
                 LocalEndpoint("127.0.0.1", 8091, "b", ("heavyweight",))]
    assert [s.name for s in model_processes("py", endpoints)] == ["model", "model2"]
    assert model_processes("py", endpoints)[1].command[-1] == "heavyweight"


def test_services_start_with_the_cache_unless_the_gateway_has_no_cache(tmp_path: Path):
    names = [s.name for s in service_processes("py", config_with(tmp_path))]
    assert names == ["router", "gateway", "cache", "embedder", "ledger"]
    no_cache = config_with(tmp_path, DRAFTGATE_GATEWAY_CACHE_URL="null", DRAFTGATE_LEDGER_ENABLED="false")
    assert [s.name for s in service_processes("py", no_cache)] == ["router", "gateway"]
    ledger = service_processes("py", config_with(tmp_path))[-1]
    assert (ledger.command, ledger.ready_url) == (["py", "-m", "services.ledger"], "http://127.0.0.1:8085/ready")
    router = service_processes("py", no_cache)[0]
    assert router.command == ["py", "-m", "services.router"]
    assert router.ready_url == "http://127.0.0.1:8081/health"


def test_banner_says_plainly_that_local_mode_uses_one_small_model_for_both_tiers(tmp_path: Path):
    lines = banner(config_with(tmp_path))
    assert "http://localhost:8080/v1" in lines[0]
    assert "drafter     -> smollm2 at http://127.0.0.1:8090/v1" in lines
    assert "heavyweight -> smollm2 at http://127.0.0.1:8090/v1" in lines
    assert any("BOTH tiers are the same small model" in line for line in lines)


def test_banner_with_an_openai_key_names_each_tier_and_where_its_key_comes_from(tmp_path: Path):
    lines = banner(config_with(tmp_path, OPENAI_API_KEY="sk-test", DRAFTGATE_GATEWAY_PORT="9000"))
    assert gateway_url(config_with(tmp_path, DRAFTGATE_GATEWAY_PORT="9000")) == "http://localhost:9000/v1"
    assert "drafter     -> gpt-4.1-nano at https://api.openai.com/v1, key from $OPENAI_API_KEY" in lines
    assert "heavyweight -> gpt-4.1 at https://api.openai.com/v1, key from $OPENAI_API_KEY" in lines
    assert not any("same" in line for line in lines)
