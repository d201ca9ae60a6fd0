"""`make stop`: end a `make run` started from another shell, and with it everything it started."""

from __future__ import annotations

import os
import signal
import time

from scripts import pidfile

WAIT_S = 20.0


def main() -> None:
    pid = pidfile.read_running()
    if pid is None:
        print("draftgate: no `make run` is running here")
        return
    # scripts.run hands SIGTERM to honcho, which stops each process group it started.
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if pidfile.read_running() != pid:
            print(f"draftgate: stopped (pid {pid})")
            return
        time.sleep(0.2)
    print(f"draftgate: pid {pid} is still stopping after {WAIT_S:.0f}s")
    raise SystemExit(1)


if __name__ == "__main__":
    main()
