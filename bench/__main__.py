"""`python -m bench [name ...]`: run the benchmarks (all by default) and print a summary."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["overhead", "speculation", "embedder", "cache_lookup", "cache_hit", "local_model"]


def main() -> None:
    names = sys.argv[1:] or BENCHMARKS
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    for name in names:
        print(f"== {name}", flush=True)
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
