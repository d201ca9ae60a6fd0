"""The benchmarks' CPU accounting: a service's worker processes are part of its cost, alive or ended."""

from __future__ import annotations

import subprocess
import sys

import psutil

from bench.harness import tree_usage, usage

# Burns about 0.3 s of CPU, says so, then waits to be told to end.
BURN = "import sys\nn = 0\nfor i in range(6_000_000): n += i\nprint('done', flush=True)\nsys.stdin.read()\n"


FLOAT_SLACK_S = 1e-9  # far below the kernel's 10 ms ticks: rounding only


def test_a_process_tree_s_cpu_includes_its_children_alive_and_after_they_ended() -> None:
    me = psutil.Process()
    child = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        burned = usage(psutil.Process(child.pid)).cpu_s
        mine = usage(me).cpu_s  # before the tree is read: our own CPU only grows meanwhile
        alive = tree_usage(me)
        assert burned > 0.05
        assert alive.cpu_s >= mine + burned
        assert alive.rss_bytes > usage(me).rss_bytes
    finally:
        child.communicate("")  # ends and is waited for: its CPU moves to our children_* times
    mine = usage(me).cpu_s
    ended = tree_usage(me)
    # Nothing lost when the worker went (the same seconds summed in another order may differ in the last bit).
    assert ended.cpu_s >= alive.cpu_s - FLOAT_SLACK_S
    assert ended.cpu_s - mine >= burned - FLOAT_SLACK_S
