"""The pidfile through which `make stop` finds the `make run` started from another shell."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PIDFILE = REPO / ".data" / "run.pid"
RUN_MODULE = "scripts.run"


def write(path: Path = PIDFILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")


def remove(path: Path = PIDFILE) -> None:
    """Remove the pidfile only if it is ours: a second `make run` must not erase the first one's."""
    if read_running(path) == os.getpid():
        path.unlink(missing_ok=True)


def read_running(path: Path = PIDFILE) -> int | None:
    """The pid of a live `python -m scripts.run`, or None (no file, stale file, pid reused)."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_run_process(pid) else None


def _is_run_process(pid: int) -> bool:
    try:
        command = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True,
                                 check=False).stdout
    except OSError:
        return False
    return RUN_MODULE in command
