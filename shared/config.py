"""One typed configuration for every service: YAML file, then environment overrides.

Keys are `section.key` in YAML and `DRAFTGATE_<SECTION>_<KEY>` in the environment.
Everything is validated once at start; a bad value raises ConfigError naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from shared.pricing import LOCAL_AS, Price, published

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"
ENV_PREFIX = "DRAFTGATE_"
LOCAL_MODEL_URL = "http://127.0.0.1:8090/v1"
OPENAI_URL = "https://api.openai.com/v1"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HEDGE_PERCENTILE = re.compile(r"[pP](\d{1,2}(?:\.\d+)?)")  # a tier's hedge_after: p50 .. p99.9


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the key."""


class StartRefused(ConfigError):
    """The configuration is valid but unsafe to run as given; the message says why and what to set."""


# Every service listens on loopback unless told otherwise: compose, Kubernetes and the images
# set the host explicitly (0.0.0.0) where other containers or pods must reach it.
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class TemplateConfig:
    """A named prompt template: its system prompt, with {variables} a request fills in
    (metadata.template_id and metadata.variables)."""

    id: str = ""
    system: str = ""
    description: str = ""


@dataclass(frozen=True)
class GatewayConfig:
    host: str = LOOPBACK
    port: int = 8080
    request_timeout_s: float = 120.0
    max_body_bytes: int = 1_048_576
    api_keys_env: str | None = None
    admin_keys_env: str | None = None
    allow_anonymous: bool = False
    cache_url: str | None = "http://127.0.0.1:8083"
    cache_timeout_s: float = 0.5
    # Keys created through the admin API (POST /admin/keys) or `python -m services.gateway.keys`,
    # stored hashed in Redis, each with its tenant, models, limits, budgets and expiry.
    virtual_keys: bool = True
    ledger_url: str | None = "http://127.0.0.1:8085"  # the ledger service (analytics); null: no analytics
    templates: tuple[TemplateConfig, ...] = ()  # more can be added through the admin API
    session_ttl_s: int = 3600  # a session unused this long is forgotten
    session_max_tokens: int = 4000  # the history prepended to a session's next request, oldest turns dropped first


@dataclass(frozen=True)
class RedisConfig:
    url: str = "redis://127.0.0.1:6379/0"
    retries: int = 4  # reconnect-and-resend attempts on a connection error (about 1.2 s in all)
    socket_timeout_s: float = 5.0  # a command with no answer by then fails (and is retried)


@dataclass(frozen=True)
class DeploymentConfig:
    """One deployment of a tier: a model behind one endpoint. A key left unset takes the tier's value
    (the tier-level base_url, model, provider, ... are the defaults of its deployments)."""

    name: str = ""
    provider: str | None = None
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    weight: float = 1.0  # the weighted strategy's share
    max_concurrent: int | None = None  # calls in flight per router process; null: unbounded
    rpm: int | None = None  # requests per minute, across all routers (Redis); null: no limit
    tpm: int | None = None  # tokens per minute, across all routers; null: no limit
    timeout_s: float | None = None
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    continuation: str | None = None

    @property
    def price(self) -> Price | None:
        if self.input_usd_per_mtok is None or self.output_usd_per_mtok is None:
            return None
        return Price(self.input_usd_per_mtok, self.output_usd_per_mtok)


@dataclass(frozen=True)
class UpstreamConfig:
    """One model tier. base_url and model left unset pick the default for the mode:
    OpenAI when OPENAI_API_KEY is set, else the local llama.cpp server.

    A tier is a list of `deployments`; the single-endpoint form (base_url / model / api_key_env at
    tier level, no deployments) is one deployment named after the tier. With deployments, the
    tier-level keys are their defaults. After loading, `deployments` is always filled in and the
    tier-level base_url / model / price are the first deployment's (what logs and /v1/models show).
    """

    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    timeout_s: float = 60.0
    # The API it speaks: openai (any OpenAI-compatible server), anthropic (the Messages API) or
    # gemini (generateContent). Unset base_url and api_key_env then default to that provider's.
    provider: str = "openai"
    # How this upstream continues a partly shown answer (progressive streaming): instruction (any
    # chat model: the shown text as an assistant turn, then a request to go on from it),
    # continue_final_message (vLLM, SGLang: the server extends the last assistant message) or prefill
    # (servers that extend a trailing assistant message by themselves).
    continuation: str = "instruction"
    # USD per million tokens; unset: the published price of a known model (shared/pricing.py), the
    # gpt-4.1-nano / gpt-4.1 pair for the local tiers, else unpriced (no cost is counted)
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    deployments: tuple[DeploymentConfig, ...] = ()
    balancing: str = "round_robin"  # round_robin | weighted | least_busy | latency | cost
    # Tried in order when every deployment of this tier failed: a tier name (its deployments) or a
    # deployment name (of any tier).
    fallbacks: tuple[str, ...] = ()
    retries: int = 2  # further attempts on a retryable failure before the first token (next deployment first)
    retry_backoff_ms: float = 100.0  # base of the jittered exponential backoff between attempts
    breaker_failures: int = 5  # this many failures within breaker_window_s open a deployment's breaker
    breaker_window_s: float = 30.0
    breaker_cooldown_s: float = 30.0  # open this long, then one probe call
    hedge_after_ms: float | None = None  # no first token by then: the same call starts on a second deployment
    hedge_after: str | None = None  # instead of hedge_after_ms: a percentile of the deployment's TTFT, e.g. p95
    # Calls in flight on this tier across every router (counted in Redis); null: unbounded. A call
    # that finds the tier full waits up to queue_timeout_s for a slot, then the tier counts as full.
    cluster_max_concurrent: int | None = None
    queue_timeout_s: float = 5.0

    @property
    def price(self) -> Price | None:
        if self.input_usd_per_mtok is None or self.output_usd_per_mtok is None:
            return None
        return Price(self.input_usd_per_mtok, self.output_usd_per_mtok)

    @property
    def hedge_percentile(self) -> float | None:
        """hedge_after as a number (`p95` -> 95.0, `p99.9` -> 99.9); None when unset or malformed."""
        found = HEDGE_PERCENTILE.fullmatch((self.hedge_after or "").strip())
        return float(found[1]) if found else None


@dataclass(frozen=True)
class RoutingConfig:
    entropy_threshold: float = 2.0
    window: int = 10
    top_logprobs: int = 5
    early_exit_tokens: int = 10
    speculation_threshold: float | None = None  # unset: 0.7 x entropy_threshold; null: off
    max_concurrent_speculations: int = 8
    stream_mode: str = "progressive"  # streamed requests: progressive (release confident tokens) | buffered
    stream_holdback_tokens: int = 4  # progressive: the newest tokens kept unshown while the window judges them
    # entropy: the window alone decides; learned: the window still aborts early, and a draft that ends is
    # accepted only when its risk (risk_model: a policy JSON from `calibrate fit`) is at or below its threshold
    policy: str = "entropy"
    risk_model: str | None = None
    # The heavyweight full (its queue, or every deployment's breaker open): serve_draft answers with the
    # draft anyway (X-Degraded: true); reject answers 503.
    degraded_mode: str = "serve_draft"


@dataclass(frozen=True)
class BusConfig:
    request_stream_maxlen: int = 100_000
    reply_stream_maxlen: int = 10_000
    reply_stream_ttl_s: int = 300
    reply_coalesce_ms: float = 50.0  # a streamed answer's chunks are written at most this often (0: each at once)
    reclaim_idle_ms: int = 15_000
    reclaim_interval_ms: int = 2_000
    router_heartbeat_s: float = 2.0
    router_alive_s: float = 10.0
    outage_grace_s: float = 3.0  # Redis unreachable this long: requests waiting on it end in 503


@dataclass(frozen=True)
class RouterConfig:
    host: str = LOOPBACK
    port: int = 8081
    max_in_flight: int = 256
    shutdown_grace_s: float = 20.0


@dataclass(frozen=True)
class CacheConfig:
    host: str = LOOPBACK
    port: int = 8083
    embedder_url: str = "http://127.0.0.1:8084"
    embedder_timeout_s: float = 1.0
    # Storing an answer waits longer: no request waits on it, and a busy embedder (a burst of lookups
    # ahead of the write's 64 texts) would otherwise keep whole batches out of the semantic tier.
    embedder_write_timeout_s: float = 5.0  # at most half of bus.reclaim_idle_ms: cache_write_timeout_s
    # Semantic tier: the nearest `candidates` entries at or above `similarity_floor` (cosine) are
    # retrieved, then each must pass the verifier (services/cache/verify.py) to be served.
    similarity_floor: float = 0.85
    candidates: int = 4
    verify: str = "learned"  # rules | learned
    verify_model: str | None = None  # learned: a model JSON; None: the one shipped in services/cache/
    verify_drafter: bool = False  # also ask the drafter tier "same answer?" on would-be hits
    verify_drafter_min_prob: float = 0.9  # the drafter's probability of "yes" needed to serve
    verify_drafter_timeout_s: float = 0.3  # slower: the would-be hit is a miss
    ttl_s: int = 3600
    max_temperature: float = 1.0
    qdrant_url: str | None = None
    qdrant_path: str = ".data/qdrant"
    collection: str = "draftgate_cache"


# onnx: MiniLM on ONNX Runtime from the export `make install` writes; onnx-int8: the same, weights
# quantised to int8 (faster, further from torch); torch: sentence-transformers; openai: any remote API.
STREAM_MODES = ("progressive", "buffered")
DEGRADED_MODES = ("serve_draft", "reject")
POLICIES = ("entropy", "learned")
CONTINUATIONS = ("instruction", "continue_final_message", "prefill")
PROVIDERS = ("openai", "anthropic", "gemini")
# Providers whose API returns token log-probs: only these can draft (the router judges a draft by
# them). services/router/upstreams' Provider.logprobs says the same; a unit test holds them equal.
LOGPROB_PROVIDERS = ("openai", "gemini")
PROVIDER_DEFAULTS = {"anthropic": ("https://api.anthropic.com", "ANTHROPIC_API_KEY"),
                     "gemini": ("https://generativelanguage.googleapis.com", "GEMINI_API_KEY")}
EMBEDDER_BACKENDS = ("onnx", "onnx-int8", "torch", "openai")


@dataclass(frozen=True)
class EmbedderConfig:
    host: str = LOOPBACK
    port: int = 8084
    backend: str = "onnx"
    model: str = "all-MiniLM-L6-v2"
    base_url: str | None = None
    api_key_env: str | None = None
    max_wait_ms: float = 2.0
    max_batch: int = 64
    threads: int = 1  # intra-op threads of the local backends (onnx, torch); 0 = one per core
    onnx_dir: str | None = None  # where the ONNX export lives; None: under the Python environment's prefix


@dataclass(frozen=True)
class LedgerConfig:
    """The request ledger: gateways put one record per finished request on a Redis stream; the
    ledger service (`python -m services.ledger`) writes them to SQL and answers analytics."""

    enabled: bool = True  # gateways emit records
    host: str = LOOPBACK
    port: int = 8085
    database_url: str = "sqlite+aiosqlite:///.data/ledger.db"  # or postgresql+asyncpg://...
    stream_maxlen: int = 1_000_000  # records waiting for the ledger service (database down) before the oldest go
    batch: int = 500  # records written per transaction at most
    gateway_buffer: int = 100_000  # records a gateway holds while Redis is unreachable; beyond it they are dropped
    # A writer that found fewer than `batch` records lets more gather this long before its next batch (the
    # gateway's buffer into the stream, the ledger service's reads into SQL): one wake-up and one round trip
    # or transaction per interval instead of per record at low rates. 0: every record at once. 500, not 100:
    # a transaction and a read cost the service about 3 ms whatever their size (bench/edge.py at ~1,000
    # requests/s: 0.070 ms of its CPU per record at 100, 0.045 at 500); records reach SQL within about a second.
    linger_ms: float = 500.0


@dataclass(frozen=True)
class TenantRateConfig:
    tenant: str = ""
    rate: float = 0.0


@dataclass(frozen=True)
class AuditConfig:
    """Production audit: a share of accepted drafts is re-asked of the heavyweight and compared."""

    sample_rate: float = 0.02
    tenant_sample_rates: tuple[TenantRateConfig, ...] = ()  # per-tenant overrides of sample_rate
    opt_out_tenants: tuple[str, ...] = ()  # never audited
    max_cost_usd_per_day: float = 1.0  # the auditor's own budget, across the cluster
    judge: bool = False  # also ask the calibration judge (through the heavyweight) when the answers differ
    agree_similarity: float = 0.8  # embedding cosine at or above which two answers agree
    window: int = 200  # the disagreement rate is over the last this many verdicts
    alert_disagreement_rate: float = 0.2  # the alert rule in deploy/ fires above this
    max_concurrent: int = 2  # audits in flight per router (each a heavyweight call, maybe a judge call)
    stream_maxlen: int = 10_000  # samples waiting for an auditor before the oldest are trimmed
    labelled_maxlen: int = 100_000  # labelled traces kept on draftgate:audit:labelled (for fit --from-audit)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    json: bool = False


@dataclass(frozen=True)
class Config:
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    drafter: UpstreamConfig = field(default_factory=UpstreamConfig)
    heavyweight: UpstreamConfig = field(default_factory=UpstreamConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (DRAFTGATE_CONFIG or config.yaml), apply env overrides, validate."""
    env = os.environ if env is None else env
    path = Path(path or env.get("DRAFTGATE_CONFIG") or DEFAULT_CONFIG_PATH)
    raw = _read_yaml(path)
    sections = {}
    given: set[str] = set()
    for name, cls in typing.get_type_hints(Config).items():
        values = raw.pop(name, None) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{name}: must be a mapping, got {type(values).__name__}")
        sections[name] = _build_section(name, cls, values, env, given)
    if raw:
        raise ConfigError(f"{sorted(raw)[0]}: unknown section")
    config = Config(**sections)
    config = _resolve_tier_defaults(config, env)
    if "routing.speculation_threshold" not in given:
        config = dataclasses.replace(config, routing=dataclasses.replace(
            config.routing, speculation_threshold=_default_speculation_threshold(config)))
    _validate(config)
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


# Keys that existed once: naming one says what replaced it instead of "unknown key".
REPLACED = {
    "cache.similarity_threshold": "replaced by cache.similarity_floor (the recall floor for candidates) and "
                                  "cache.verify (which decides whether a candidate is served)",
    "embedder.torch_threads": "renamed embedder.threads (the intra-op threads of the onnx and torch backends alike)",
}


def _build_section(name: str, cls: Any, values: dict[str, Any], env: Mapping[str, str], given: set[str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in sorted(values):
        if f"{name}.{key}" in REPLACED:
            raise ConfigError(f"{name}.{key}: {REPLACED[f'{name}.{key}']}")
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{name}.{sorted(unknown)[0]}: unknown key")
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{name}.{f.name}"
        env_name = f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}"
        if env_name in env:
            kwargs[f.name] = _coerce(key, hints[f.name], env[env_name], from_env=True)
        elif f.name in values:
            kwargs[f.name] = _coerce(key, hints[f.name], values[f.name], from_env=False)
        else:
            continue
        given.add(key)
    return cls(**kwargs)


def _coerce(key: str, hint: Any, value: Any, *, from_env: bool) -> Any:
    """Turn a YAML value or an env string into the field's type, or say why not."""
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if value is None or (from_env and optional and str(value).strip().lower() in ("", "null", "none")):
        if optional:
            return None
        raise ConfigError(f"{key}: must be set")
    if typing.get_origin(base) is tuple:
        return _coerce_list(key, typing.get_args(base)[0], value, from_env=from_env)
    if dataclasses.is_dataclass(base):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: must be a mapping, got {type(value).__name__}")
        return _build_section(key, base, value, {}, set())
    try:
        if base is bool:
            return _to_bool(value)
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            if not from_env and not isinstance(value, str):
                raise ValueError
            return str(value)
    except ValueError:
        raise ConfigError(f"{key}: expected {base.__name__}, got {value!r}") from None
    raise ConfigError(f"{key}: unsupported type {hint}")


def _coerce_list(key: str, item: Any, value: Any, *, from_env: bool) -> tuple[Any, ...]:
    """A list key (`tuple[X, ...]`): a YAML list, or in the environment a YAML/JSON list (a lone
    string for a list of strings). Each item is coerced as `key[i]`, so errors name it."""
    if from_env:
        try:
            value = yaml.safe_load(value) if str(value).strip() else []
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key}: not a valid YAML/JSON list ({exc})") from None
        if isinstance(value, str) and item is str:
            value = [part.strip() for part in value.split(",") if part.strip()]
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list, got {type(value).__name__}")
    return tuple(_coerce(f"{key}[{index}]", item, element, from_env=False) for index, element in enumerate(value))


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _default_speculation_threshold(config: Config) -> float | None:
    """0.7 x the entropy threshold; off when both tiers are the same model on the same server
    (local mode), where a speculative call would only queue behind the draft it shadows."""
    same = (config.drafter.base_url, config.drafter.model) == (config.heavyweight.base_url, config.heavyweight.model)
    return None if same else 0.7 * config.routing.entropy_threshold


def _resolve_tier_defaults(config: Config, env: Mapping[str, str]) -> Config:
    """With OPENAI_API_KEY set, unset tiers default to OpenAI; otherwise to the local model."""
    use_openai = bool(env.get("OPENAI_API_KEY"))
    defaults = {
        "drafter": ("gpt-4.1-nano" if use_openai else "smollm2"),
        "heavyweight": ("gpt-4.1" if use_openai else "smollm2"),
    }
    tiers = {}
    for name, model in defaults.items():
        tier: UpstreamConfig = getattr(config, name)
        if tier.provider in PROVIDER_DEFAULTS:  # a native API: its own endpoint and key, no default model
            url, key_env = PROVIDER_DEFAULTS[tier.provider]
            tiers[name] = _with_price(name, dataclasses.replace(
                tier, base_url=tier.base_url or url, api_key_env=tier.api_key_env or key_env))
            continue
        if tier.base_url is None:
            tier = dataclasses.replace(
                tier,
                base_url=OPENAI_URL if use_openai else LOCAL_MODEL_URL,
                api_key_env=tier.api_key_env or ("OPENAI_API_KEY" if use_openai else None),
            )
        if tier.model is None:
            tier = dataclasses.replace(tier, model=model if tier.base_url in (OPENAI_URL, LOCAL_MODEL_URL) else None)
        tiers[name] = _with_price(name, tier)
    return dataclasses.replace(config, **{name: _with_deployments(name, tier) for name, tier in tiers.items()})


def tier_deployments(name: str, tier: UpstreamConfig) -> tuple[DeploymentConfig, ...]:
    """The tier's deployments, also for an UpstreamConfig built without load_config (tests, tools)."""
    return _with_deployments(name, tier).deployments


INHERITED = ("provider", "base_url", "model", "api_key_env", "timeout_s", "continuation")


def _with_deployments(name: str, tier: UpstreamConfig) -> UpstreamConfig:
    """Every tier as a list of deployments: the single-endpoint form is one named after the tier;
    listed deployments take the tier's value for each key they leave unset. The tier-level
    base_url / model / provider / price then say the first deployment's."""
    if not tier.deployments:
        only = DeploymentConfig(name=name, **{key: getattr(tier, key) for key in INHERITED},
                                input_usd_per_mtok=tier.input_usd_per_mtok,
                                output_usd_per_mtok=tier.output_usd_per_mtok)
        return dataclasses.replace(tier, deployments=(only,))
    deployments = tuple(_inherit(tier, deployment) for deployment in tier.deployments)
    first = deployments[0]
    return dataclasses.replace(tier, provider=first.provider or tier.provider, base_url=first.base_url,
                               model=first.model, api_key_env=first.api_key_env, deployments=deployments,
                               input_usd_per_mtok=first.input_usd_per_mtok,
                               output_usd_per_mtok=first.output_usd_per_mtok)


def _inherit(tier: UpstreamConfig, deployment: DeploymentConfig) -> DeploymentConfig:
    """A listed deployment with the tier's values where it sets none, its provider's defaults, its price."""
    values = {key: getattr(deployment, key) if getattr(deployment, key) is not None else getattr(tier, key)
              for key in INHERITED}
    provider = values["provider"]
    if deployment.provider is not None and deployment.provider != tier.provider and provider in PROVIDER_DEFAULTS:
        url, key_env = PROVIDER_DEFAULTS[provider]  # another API than the tier's: not the tier's endpoint or key
        values["base_url"] = deployment.base_url or url
        values["api_key_env"] = deployment.api_key_env or key_env
    resolved = dataclasses.replace(deployment, **values)
    known = published(resolved.model) if resolved.model else None
    if known is None:
        return resolved
    return dataclasses.replace(
        resolved,
        input_usd_per_mtok=known.input_usd_per_mtok if resolved.input_usd_per_mtok is None
        else resolved.input_usd_per_mtok,
        output_usd_per_mtok=known.output_usd_per_mtok if resolved.output_usd_per_mtok is None
        else resolved.output_usd_per_mtok)


def _with_price(name: str, tier: UpstreamConfig) -> UpstreamConfig:
    """Fill in what the config leaves unset of the tier's price from the published list."""
    known = published(LOCAL_AS[name] if tier.base_url == LOCAL_MODEL_URL else tier.model)
    if known is None:
        return tier
    return dataclasses.replace(
        tier,
        input_usd_per_mtok=known.input_usd_per_mtok if tier.input_usd_per_mtok is None else tier.input_usd_per_mtok,
        output_usd_per_mtok=known.output_usd_per_mtok if tier.output_usd_per_mtok is None else tier.output_usd_per_mtok)


def cache_write_timeout_s(config: Config) -> float:
    """How long storing an answer waits for its embeddings: cache.embedder_write_timeout_s, but at most
    half of bus.reclaim_idle_ms, so a write still embedding is never reclaimed by another cache replica
    and stored twice (a stack tuned for fast reclaims, as the tests' is, gets the shorter wait)."""
    return min(config.cache.embedder_write_timeout_s, config.bus.reclaim_idle_ms / 2000)


def _validate(config: Config) -> None:
    checks: list[tuple[str, bool, str]] = [
        ("gateway.port", 0 <= config.gateway.port <= 65535, "must be a port number (0-65535)"),
        ("router.port", 0 <= config.router.port <= 65535, "must be a port number (0-65535)"),
        ("cache.port", 0 <= config.cache.port <= 65535, "must be a port number (0-65535)"),
        ("embedder.port", 0 <= config.embedder.port <= 65535, "must be a port number (0-65535)"),
        ("gateway.request_timeout_s", config.gateway.request_timeout_s > 0, "must be > 0"),
        ("gateway.max_body_bytes", config.gateway.max_body_bytes > 0, "must be > 0"),
        ("gateway.cache_timeout_s", config.gateway.cache_timeout_s > 0, "must be > 0"),
        ("redis.url", config.redis.url.startswith(("redis://", "rediss://", "unix://")),
         "must start with redis://, rediss:// or unix://"),
        ("routing.entropy_threshold", config.routing.entropy_threshold > 0, "must be > 0 bits"),
        ("routing.window", config.routing.window >= 1, "must be >= 1"),
        ("routing.top_logprobs", 1 <= config.routing.top_logprobs <= 20, "must be between 1 and 20"),
        ("routing.early_exit_tokens", config.routing.early_exit_tokens >= 0, "must be >= 0"),
        ("routing.max_concurrent_speculations", config.routing.max_concurrent_speculations >= 0, "must be >= 0"),
        ("routing.stream_mode", config.routing.stream_mode in STREAM_MODES,
         f"must be one of {', '.join(repr(mode) for mode in STREAM_MODES)}"),
        ("routing.stream_holdback_tokens", config.routing.stream_holdback_tokens >= 0, "must be >= 0"),
        ("routing.policy", config.routing.policy in POLICIES,
         f"must be one of {', '.join(repr(policy) for policy in POLICIES)}"),
        ("routing.risk_model", config.routing.policy != "learned" or bool(config.routing.risk_model),
         "must name a policy file when routing.policy is 'learned' (`python -m services.router.calibrate fit` "
         "writes one)"),
        ("routing.degraded_mode", config.routing.degraded_mode in DEGRADED_MODES,
         f"must be one of {', '.join(repr(mode) for mode in DEGRADED_MODES)}"),
        ("gateway.session_ttl_s", config.gateway.session_ttl_s >= 1, "must be >= 1"),
        ("gateway.session_max_tokens", config.gateway.session_max_tokens >= 1, "must be >= 1"),
        ("gateway.ledger_url", config.gateway.ledger_url is None
         or config.gateway.ledger_url.startswith(("http://", "https://")), "must be an http(s) URL (or null)"),
        ("ledger.port", 0 <= config.ledger.port <= 65535, "must be a port number (0-65535)"),
        ("ledger.database_url", config.ledger.database_url.startswith(("sqlite+aiosqlite://",
                                                                       "postgresql+asyncpg://")),
         "must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL"),
        ("ledger.stream_maxlen", config.ledger.stream_maxlen >= 1000, "must be >= 1000"),
        ("ledger.batch", config.ledger.batch >= 1, "must be >= 1"),
        ("ledger.linger_ms", 0 <= config.ledger.linger_ms <= 5000, "must be between 0 and 5000"),
        ("ledger.gateway_buffer", config.ledger.gateway_buffer >= 1, "must be >= 1"),
        ("audit.sample_rate", 0 <= config.audit.sample_rate <= 1, "must be between 0 and 1"),
        ("audit.max_cost_usd_per_day", config.audit.max_cost_usd_per_day >= 0, "must be >= 0"),
        ("audit.agree_similarity", 0 < config.audit.agree_similarity <= 1, "must be in (0, 1]"),
        ("audit.window", config.audit.window >= 1, "must be >= 1"),
        ("audit.alert_disagreement_rate", 0 < config.audit.alert_disagreement_rate <= 1, "must be in (0, 1]"),
        ("audit.max_concurrent", config.audit.max_concurrent >= 1, "must be >= 1"),
        ("audit.stream_maxlen", config.audit.stream_maxlen >= 1, "must be >= 1"),
        ("audit.labelled_maxlen", config.audit.labelled_maxlen >= 1, "must be >= 1"),
        ("router.max_in_flight", config.router.max_in_flight >= 1, "must be >= 1"),
        ("router.shutdown_grace_s", config.router.shutdown_grace_s >= 0, "must be >= 0"),
        ("bus.reclaim_idle_ms", config.bus.reclaim_idle_ms >= 100, "must be >= 100"),
        ("bus.reclaim_interval_ms", config.bus.reclaim_interval_ms >= 10, "must be >= 10"),
        ("bus.request_stream_maxlen", config.bus.request_stream_maxlen >= 100, "must be >= 100"),
        ("bus.reply_stream_maxlen", config.bus.reply_stream_maxlen >= 100, "must be >= 100"),
        ("bus.reply_stream_ttl_s", config.bus.reply_stream_ttl_s >= 1, "must be >= 1"),
        ("bus.reply_coalesce_ms", 0 <= config.bus.reply_coalesce_ms <= 1000, "must be between 0 and 1000"),
        ("bus.outage_grace_s", config.bus.outage_grace_s > 0, "must be > 0"),
        # A router's heartbeat and its cluster-queue leases are refreshed every router_heartbeat_s and
        # count as gone after router_alive_s: a shorter life would expire them between refreshes.
        ("bus.router_alive_s", config.bus.router_alive_s > config.bus.router_heartbeat_s > 0,
         "must be greater than bus.router_heartbeat_s (and both > 0)"),
        ("redis.retries", config.redis.retries >= 0, "must be >= 0"),
        ("redis.socket_timeout_s", config.redis.socket_timeout_s > 1, "must be > 1 (blocking reads wait 1 s)"),
        ("cache.similarity_floor", 0 < config.cache.similarity_floor <= 1, "must be in (0, 1]"),
        ("cache.candidates", 1 <= config.cache.candidates <= 32, "must be between 1 and 32"),
        ("cache.verify", config.cache.verify in ("rules", "learned"), "must be 'rules' or 'learned'"),
        ("cache.verify_drafter_min_prob", 0.5 < config.cache.verify_drafter_min_prob <= 1, "must be in (0.5, 1]"),
        ("cache.verify_drafter_timeout_s", config.cache.verify_drafter_timeout_s > 0, "must be > 0"),
        ("cache.ttl_s", config.cache.ttl_s >= 1, "must be >= 1"),
        ("cache.embedder_timeout_s", config.cache.embedder_timeout_s > 0, "must be > 0"),
        ("cache.embedder_write_timeout_s", config.cache.embedder_write_timeout_s > 0, "must be > 0"),
        ("embedder.backend", config.embedder.backend != "local",
         "'local' was split in two: 'onnx' (the default: MiniLM on ONNX Runtime, the same vectors for less CPU) "
         "or 'torch' (sentence-transformers, as 'local' was)"),
        ("embedder.backend", config.embedder.backend in EMBEDDER_BACKENDS,
         f"must be one of {', '.join(repr(name) for name in EMBEDDER_BACKENDS)}"),
        ("embedder.max_wait_ms", config.embedder.max_wait_ms >= 0, "must be >= 0"),
        ("embedder.max_batch", config.embedder.max_batch >= 1, "must be >= 1"),
        ("embedder.threads", config.embedder.threads >= 0, "must be >= 0 (0: one per core)"),
        ("embedder.onnx_dir", config.embedder.onnx_dir != "", "must be a directory (or null for the default)"),
        ("logging.level", config.logging.level.lower() in ("debug", "info", "warning", "error"),
         "must be debug, info, warning or error"),
    ]
    for key in ("api_keys_env", "admin_keys_env"):
        name = getattr(config.gateway, key)
        checks.append((f"gateway.{key}", name is None or ENV_NAME.fullmatch(name) is not None,
                       "must be the name of an environment variable (or null)"))
    for index, rate in enumerate(config.audit.tenant_sample_rates):
        checks.append((f"audit.tenant_sample_rates[{index}].rate", 0 <= rate.rate <= 1, "must be between 0 and 1"))
        checks.append((f"audit.tenant_sample_rates[{index}].tenant", bool(rate.tenant), "must be set"))
    template_ids: set[str] = set()
    for index, template in enumerate(config.gateway.templates):
        checks.append((f"gateway.templates[{index}].id", bool(template.id) and template.id not in template_ids,
                       "must be set and unique"))
        checks.append((f"gateway.templates[{index}].system", bool(template.system), "must be set"))
        template_ids.add(template.id)
    speculation = config.routing.speculation_threshold
    if speculation is not None:
        checks.append(("routing.speculation_threshold", 0 < speculation <= config.routing.entropy_threshold,
                       "must be > 0 and <= routing.entropy_threshold (or null to turn speculation off)"))
    for tier in ("drafter", "heavyweight"):
        upstream: UpstreamConfig = getattr(config, tier)
        checks.append((f"{tier}.provider", upstream.provider in PROVIDERS,
                       f"must be one of {', '.join(repr(name) for name in PROVIDERS)}"))
        checks.append((f"{tier}.base_url", bool(upstream.base_url) and upstream.base_url.startswith(("http://", "https://")),
                       "must be an http:// or https:// URL"))
        checks.append((f"{tier}.model", bool(upstream.model), "must be set when base_url is not a default"))
        checks.append((f"{tier}.base_url", not (_has_credentials(upstream.base_url) and upstream.api_key_env
                                                and upstream.provider == "openai"),
                       "carries user:password (sent as HTTP Basic auth) and api_key_env names a key too; "
                       "both would be the Authorization header: keep one"))
        checks.append((f"{tier}.timeout_s", upstream.timeout_s > 0, "must be > 0"))
        for key in ("input_usd_per_mtok", "output_usd_per_mtok"):
            value = getattr(upstream, key)
            checks.append((f"{tier}.{key}", value is None or value >= 0, "must be >= 0 (USD per million tokens)"))
        checks.append((f"{tier}.continuation", upstream.continuation in CONTINUATIONS,
                       f"must be one of {', '.join(repr(style) for style in CONTINUATIONS)}"))
    checks.append(("drafter.provider", config.drafter.provider not in PROVIDERS
                   or config.drafter.provider in LOGPROB_PROVIDERS,
                   f"{config.drafter.provider!r} cannot be the drafter: its API returns no token log-probs, which "
                   f"the router judges every draft by (use {' or '.join(LOGPROB_PROVIDERS)} for the drafter)"))
    checks.extend(_tier_pool_checks(config))
    for key, ok, message in checks:
        if not ok:
            raise ConfigError(f"{key}: {message}")


BALANCING = ("round_robin", "weighted", "least_busy", "latency", "cost")  # services/router/upstreams/balance.py


def _tier_pool_checks(config: Config) -> list[tuple[str, bool, str]]:
    """The deployments of both tiers, their balancing, retries, breaker, hedging and fallbacks.
    Deployment names are unique across tiers: a request may name one (explicit backend)."""
    checks: list[tuple[str, bool, str]] = []
    seen: dict[str, str] = {}
    for tier in ("drafter", "heavyweight"):
        upstream: UpstreamConfig = getattr(config, tier)
        for index, deployment in enumerate(upstream.deployments):
            checks.extend(_deployment_checks(tier, f"{tier}.deployments[{index}]", deployment, seen))
            seen.setdefault(deployment.name, tier)
        checks.extend([
            (f"{tier}.balancing", upstream.balancing in BALANCING,
             f"must be one of {', '.join(repr(name) for name in BALANCING)}"),
            (f"{tier}.retries", 0 <= upstream.retries <= 10, "must be between 0 and 10"),
            (f"{tier}.retry_backoff_ms", upstream.retry_backoff_ms >= 0, "must be >= 0"),
            (f"{tier}.breaker_failures", upstream.breaker_failures >= 1, "must be >= 1"),
            (f"{tier}.breaker_window_s", upstream.breaker_window_s > 0, "must be > 0"),
            (f"{tier}.breaker_cooldown_s", upstream.breaker_cooldown_s >= 0, "must be >= 0"),
            (f"{tier}.hedge_after_ms", upstream.hedge_after_ms is None or upstream.hedge_after_ms > 0,
             "must be > 0 (or null: no hedging)"),
            (f"{tier}.hedge_after", upstream.hedge_after is None
             or (upstream.hedge_percentile is not None and 50 <= upstream.hedge_percentile <= 99.9),
             f"must be a percentile of the deployment's time to first token from p50 to p99.9, such as p95 "
             f"(or null), not {upstream.hedge_after!r}"),
            (f"{tier}.hedge_after", upstream.hedge_after is None or upstream.hedge_after_ms is None,
             f"and {tier}.hedge_after_ms are both set: a tier hedges after a fixed delay or a percentile, keep one"),
            (f"{tier}.cluster_max_concurrent", upstream.cluster_max_concurrent is None
             or upstream.cluster_max_concurrent >= 1, "must be >= 1 (or null: unbounded)"),
            (f"{tier}.queue_timeout_s", upstream.queue_timeout_s >= 0, "must be >= 0"),
        ])
    for tier in ("drafter", "heavyweight"):
        upstream = getattr(config, tier)
        for index, name in enumerate(upstream.fallbacks):
            known = name in ("drafter", "heavyweight") or name in seen
            checks.append((f"{tier}.fallbacks[{index}]", known and name != tier,
                           f"{name!r} is neither the other tier nor a deployment name "
                           f"({', '.join(sorted(seen))})" if not known else "a tier cannot fall back to itself"))
    return checks


def _deployment_checks(tier: str, key: str, deployment: DeploymentConfig,
                       seen: Mapping[str, str]) -> list[tuple[str, bool, str]]:
    provider = deployment.provider or "openai"
    checks = [
        (f"{key}.name", bool(deployment.name) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]*", deployment.name)
         is not None, "must be set: letters, digits, '.', '_', ':' or '-' (requests may name it)"),
        (f"{key}.name", deployment.name not in seen,
         f"{deployment.name!r} is taken (by a deployment of the {seen.get(deployment.name)} tier); names are unique"),
        (f"{key}.provider", provider in PROVIDERS, f"must be one of {', '.join(repr(name) for name in PROVIDERS)}"),
        (f"{key}.base_url", bool(deployment.base_url) and str(deployment.base_url).startswith(("http://", "https://")),
         "must be an http:// or https:// URL"),
        (f"{key}.model", bool(deployment.model), "must be set"),
        (f"{key}.timeout_s", deployment.timeout_s is None or deployment.timeout_s > 0, "must be > 0"),
        (f"{key}.weight", deployment.weight > 0, "must be > 0"),
        (f"{key}.max_concurrent", deployment.max_concurrent is None or deployment.max_concurrent >= 1, "must be >= 1"),
        (f"{key}.rpm", deployment.rpm is None or deployment.rpm >= 1, "must be >= 1 (or null: no limit)"),
        (f"{key}.tpm", deployment.tpm is None or deployment.tpm >= 1, "must be >= 1 (or null: no limit)"),
        (f"{key}.continuation", deployment.continuation is None or deployment.continuation in CONTINUATIONS,
         f"must be one of {', '.join(repr(style) for style in CONTINUATIONS)}"),
        (f"{key}.api_key_env", deployment.api_key_env is None or ENV_NAME.fullmatch(deployment.api_key_env) is not None,
         "must be the name of an environment variable (or null)"),
    ]
    for price_key in ("input_usd_per_mtok", "output_usd_per_mtok"):
        value = getattr(deployment, price_key)
        checks.append((f"{key}.{price_key}", value is None or value >= 0, "must be >= 0 (USD per million tokens)"))
    if tier == "drafter":
        checks.append((f"{key}.provider", provider not in PROVIDERS or provider in LOGPROB_PROVIDERS,
                       f"{provider!r} cannot be a drafter deployment: its API returns no token log-probs, which "
                       f"the router judges every draft by (use {' or '.join(LOGPROB_PROVIDERS)} for the drafter)"))
    return checks


def _has_credentials(url: str | None) -> bool:
    parts = urlsplit(url or "")
    return parts.username is not None or parts.password is not None
