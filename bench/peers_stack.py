"""The proxies `bench.peers` compares, each as real processes whose CPU psutil can read.

draftgate runs from a tree exported from one commit (`git archive`), so the figures belong to that
commit even while others edit the checkout; LiteLLM's proxy runs from its own virtualenv (`make
bench-peers` installs it), configured for its fastest honest run: no database, no callbacks, no
retries, logs at ERROR, no key check (draftgate's gateway checks none here either).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
import yaml

from bench.harness import tree_usage
from bench.peers_report import LITELLM
from shared.keys import RATELIMIT_PREFIX
from tests.support import REPO, free_port

WORKTREE = "worktree"  # --commit worktree: the checkout as it is, uncommitted edits included
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0


@dataclass
class Proxy:
    """One system under test: where clients send requests, and the processes whose CPU it costs."""

    name: str
    url: str  # base URL; clients POST {url}/v1/chat/completions
    model: str  # the `model` of the request body
    processes: dict[str, psutil.Process] = field(default_factory=dict)

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far by each process, its worker children included."""
        return {name: tree_usage(process).cpu_s for name, process in self.processes.items()}

    def pids(self) -> set[int]:
        """Every process of the proxy now, workers included: a worker replaced during the run (a
        supervisor that killed it, say) shows as a pid that came or went."""
        found = set()
        for process in self.processes.values():
            with contextlib.suppress(psutil.Error):
                found |= {process.pid, *(child.pid for child in process.children(recursive=True))}
        return found


# draftgate

def resolve_commit(commit: str) -> str:
    if commit == WORKTREE:
        return WORKTREE
    return subprocess.run(["git", "rev-parse", "--verify", f"{commit}^{{commit}}"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()


def describe(commit: str) -> str:
    """The commit measured, as the results name it (`worktree@<HEAD> (dirty)` for the live checkout)."""
    if commit != WORKTREE:
        return commit
    head = resolve_commit("HEAD")
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "services", "shared"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.strip()
    return f"{WORKTREE}@{head}{' (services/ or shared/ edited)' if dirty else ''}"


def export_tree(commit: str, dest: Path) -> Path:
    """The files of `commit` under dest (read from git, the checkout untouched); the checkout itself
    for `worktree`."""
    if commit == WORKTREE:
        return REPO
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError), \
                urllib.request.urlopen(url, timeout=1) as response:
            if response.status < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s:\n{_tail(log)}")


def _tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL for whatever of its tree is left (only processes this benchmark started)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(psutil.Error):
        children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()


@contextlib.contextmanager
def _service(tree: Path, module: str, env: Mapping[str, str], log: Path, ready_url: str) -> Iterator[psutil.Process]:
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", module], cwd=tree, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_http(ready_url, proc, log)
        yield psutil.Process(proc.pid)
    finally:
        _stop(proc)


def redis_pid(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


# Every feature of issue #12 that costs something per request and leaves the call count alone:
# limits far above the load, so the Lua check runs in Redis on every call and never refuses.
FEATURE_RPM, FEATURE_TPM = 1_000_000, 1_000_000_000


def features_on(upstream_url: str) -> dict[str, str]:
    """DRAFTGATE_* settings for the issue's "every feature turned on": two deployments per tier
    (both on the fake), balanced round robin, each with an rpm and a tpm limit checked across
    routers in Redis; retries (2) and the breaker are on by default. Hedging stays off: a hedge
    is a second upstream call by design, and the comparison is of one call per request."""
    def pair(tier: str, model: str) -> str:
        return json.dumps([{"name": f"{tier}-{letter}", "base_url": upstream_url, "model": model,
                            "rpm": FEATURE_RPM, "tpm": FEATURE_TPM} for letter in "ab"])

    return {"DRAFTGATE_DRAFTER_DEPLOYMENTS": pair("drafter", "fake-drafter"),
            "DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS": pair("heavyweight", "fake-heavy")}


def redis_db(redis_url: str, db: int) -> str:
    """The same Redis, another database: a second draftgate beside the first, sharing no key."""
    return f"{redis_url.rsplit('/', 1)[0]}/{db}"


@contextlib.contextmanager
def draftgate(tree: Path, redis_url: str, upstream_url: str, logs: Path, name: str, routers: int = 2,
              settings: Mapping[str, str] | None = None) -> Iterator[Proxy]:
    """Gateway and routers, both tiers on the fake, no cache (the benchmark compares proxies, not
    caches); `settings` are more DRAFTGATE_* variables for every service."""
    env = {"DRAFTGATE_REDIS_URL": redis_url, "DRAFTGATE_LOGGING_LEVEL": "warning",
           "DRAFTGATE_DRAFTER_BASE_URL": upstream_url, "DRAFTGATE_DRAFTER_MODEL": "fake-drafter",
           "DRAFTGATE_HEAVYWEIGHT_BASE_URL": upstream_url, "DRAFTGATE_HEAVYWEIGHT_MODEL": "fake-heavy",
           "DRAFTGATE_GATEWAY_CACHE_URL": "null",
           # The production audit (a heavyweight call per sampled draft) is off: one upstream call per request.
           "DRAFTGATE_AUDIT_SAMPLE_RATE": "0", **(settings or {})}
    logs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        processes = {}
        for index in range(routers):
            port = free_port()
            processes[f"router-{index}"] = stack.enter_context(_service(
                tree, "services.router", {**env, "DRAFTGATE_ROUTER_PORT": str(port)}, logs / f"router-{index}.log",
                f"http://127.0.0.1:{port}/health"))
        port = free_port()
        processes["gateway"] = stack.enter_context(_service(
            tree, "services.gateway", {**env, "DRAFTGATE_GATEWAY_PORT": str(port)}, logs / "gateway.log",
            f"http://127.0.0.1:{port}/ready"))
        processes["redis"] = psutil.Process(redis_pid(redis_url))
        yield Proxy(name, f"http://127.0.0.1:{port}", "auto", processes)


def rate_limited_deployments(redis_url: str) -> list[str]:
    """The deployments whose rpm/tpm state is in Redis: each was checked against its limit."""
    client = redis.Redis.from_url(redis_url)
    try:
        return sorted(key.decode().removeprefix(RATELIMIT_PREFIX) for key in client.keys(f"{RATELIMIT_PREFIX}*"))
    finally:
        client.close()


# LiteLLM

LITELLM_MODEL = "fake-drafter"


def litellm_config(upstream_url: str) -> dict[str, Any]:
    """The proxy's config.yaml: the fake as an OpenAI-compatible model, and every optional cost off
    (callbacks, retries, spend and error logs; no database_url, so no Prisma)."""
    return {
        "model_list": [{"model_name": LITELLM_MODEL,
                        "litellm_params": {"model": f"openai/{LITELLM_MODEL}", "api_base": upstream_url,
                                           "api_key": "unused"}}],
        "litellm_settings": {"callbacks": [], "success_callback": [], "failure_callback": [], "num_retries": 0,
                             "request_timeout": 30, "telemetry": False, "turn_off_message_logging": True},
        "general_settings": {"disable_spend_logs": True, "disable_error_logs": True},
    }


def litellm_env() -> dict[str, str]:
    """Environment of the proxy: logs at ERROR (uvicorn's access log off with them), the bundled
    model price map instead of a download at start-up, no .env loading, and no master key
    (draftgate's gateway checks no key in this benchmark either; the proxy refuses to start
    keyless unless told this is deliberate)."""
    return {"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MODE": "PRODUCTION",
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"}


WORKER_HEALTHCHECK_S = 60


def litellm_command(litellm_bin: Path, config: Path, port: int, workers: int, server: str) -> list[str]:
    """uvicorn's supervisor kills a worker that leaves its health ping unanswered for 5 s (its
    default), which a worker importing LiteLLM, or one busy under load on two shared cores, does:
    it is killed, respawned, and the respawn's import (about 10 s of CPU) is killed again, a loop
    that burned 0.7 of a core in an idle proxy here. LiteLLM's own --timeout_worker_healthcheck
    lifts that limit to 60 s."""
    command = [str(litellm_bin), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
               "--num_workers", str(workers)]
    if server == "granian":
        return [*command, "--run_granian"]
    return [*command, "--timeout_worker_healthcheck", str(WORKER_HEALTHCHECK_S)] if workers > 1 else command


def litellm_version(litellm_bin: Path) -> dict[str, str]:
    """Versions of LiteLLM and of what sets its speed, from its own virtualenv."""
    script = ("import importlib.metadata as m, json\n"
              "names = ['litellm', 'fastapi', 'starlette', 'uvicorn', 'granian', 'uvloop', 'aiohttp', 'httpx',"
              " 'openai', 'pydantic', 'orjson']\n"
              "found = {}\n"
              "for n in names:\n"
              "    try: found[n] = m.version(n)\n"
              "    except m.PackageNotFoundError: pass\n"
              "print(json.dumps(found))\n")
    python = litellm_bin.parent / "python"
    out = subprocess.run([str(python), "-c", script], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


@contextlib.contextmanager
def litellm(litellm_bin: Path, upstream_url: str, workdir: Path, workers: int, server: str) -> Iterator[Proxy]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "litellm.yaml"
    config.write_text(yaml.safe_dump(litellm_config(upstream_url)))
    port = free_port()
    log = workdir / "litellm.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(litellm_command(litellm_bin, config, port, workers, server), cwd=workdir,
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **litellm_env()})
    try:
        _wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, log)
        yield Proxy(LITELLM, f"http://127.0.0.1:{port}", LITELLM_MODEL, {"litellm": psutil.Process(proc.pid)})
    finally:
        _stop(proc)
