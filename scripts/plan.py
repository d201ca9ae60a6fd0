"""What `make run` starts and what it tells the user, decided from the config alone (no I/O)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from scripts.local_model import LOOPBACK_HOSTS, TIERS, LocalEndpoint
from shared.config import LOCAL_MODEL_URL, Config, UpstreamConfig


@dataclass(frozen=True)
class ProcessSpec:
    """One Procfile line: a name and the command honcho runs for it."""

    name: str
    command: list[str]
    ready_url: str | None = None

    @property
    def shell(self) -> str:
        """honcho runs each line with `sh -c`; exec lets signals and exit codes reach the process itself."""
        return "exec " + shlex.join(self.command)


@dataclass(frozen=True)
class RedisTarget:
    host: str
    port: int


def redis_target(url: str) -> RedisTarget | None:
    """The loopback host:port a redis-server could be started on for this URL; None if not ours to start."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or (parts.hostname or "") not in LOOPBACK_HOSTS:
        return None
    return RedisTarget(parts.hostname or "127.0.0.1", parts.port or 6379)


def redis_process(binary: str, target: RedisTarget, data_dir: Path) -> ProcessSpec:
    """A throw-away Redis: the streams only carry requests in flight, so nothing is saved."""
    return ProcessSpec("redis", [binary, "--bind", target.host, "--port", str(target.port), "--save", "",
                                 "--appendonly", "no", "--dir", str(data_dir)])


def model_processes(python: str, endpoints: list[LocalEndpoint]) -> list[ProcessSpec]:
    specs = []
    for i, endpoint in enumerate(endpoints):
        name = "model" if i == 0 else f"model{i + 1}"
        specs.append(ProcessSpec(name, [python, "-m", "scripts.local_model", "--tier", endpoint.tiers[0]],
                                 ready_url=f"{endpoint.base_url}/models"))
    return specs


def service_processes(python: str, config: Config) -> list[ProcessSpec]:
    """Router and gateway always; the cache and its embedder unless the gateway has no cache_url; the
    ledger (a SQLite file under .data/ by default) unless ledger.enabled is false."""
    names = ["router", "gateway"]
    if config.gateway.cache_url:
        names += ["cache", "embedder"]
    if config.ledger.enabled:
        names.append("ledger")
    # The gateway's /ready also needs a live router heartbeat in Redis; the ledger's, its migrated database.
    paths = {"gateway": "/ready", "ledger": "/ready"}
    return [ProcessSpec(name, [python, "-m", f"services.{name}"],
                        ready_url=f"http://127.0.0.1:{getattr(config, name).port}{paths.get(name, '/health')}")
            for name in names]


def gateway_url(config: Config) -> str:
    host = config.gateway.host
    shown = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1") else host
    return f"http://{shown}:{config.gateway.port}/v1"


def describe_tier(name: str, tier: UpstreamConfig) -> str:
    key = f", key from ${tier.api_key_env}" if tier.api_key_env else ""
    return f"{name:<11} -> {tier.model} at {tier.base_url}{key}"


def banner(config: Config) -> list[str]:
    """The lines `make run` prints first: where to send requests and what answers them."""
    lines = [f"draftgate gateway: {gateway_url(config)}  (OpenAI-compatible; model \"auto\" routes by entropy, "
             "\"drafter\"/\"heavyweight\" force a tier)"]
    lines += [describe_tier(name, getattr(config, name)) for name in TIERS]
    same = (config.drafter.base_url, config.drafter.model) == (config.heavyweight.base_url, config.heavyweight.model)
    if same and config.drafter.base_url == LOCAL_MODEL_URL:
        lines.append("local mode: BOTH tiers are the same small model (SmolLM2-135M-Instruct on llama.cpp), so an "
                     "escalation re-asks the same model. Set OPENAI_API_KEY or configure the tiers in config.yaml "
                     "for a real heavyweight (see docs/local-mode.md).")
    elif same:
        lines.append("note: both tiers use the same upstream and model; escalation will not improve answers.")
    return lines
