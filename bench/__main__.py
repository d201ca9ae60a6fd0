"""`python -m bench [name ...]`: run the benchmarks (all by default) and print a summary.

Options after a single name go to that benchmark: `python -m bench soak --minutes 1`."""

from __future__ import annotations

import importlib
import sys

# The soak last: it takes ten minutes, the others one or two each.
BENCHMARKS = ["overhead", "edge", "ledger", "speculation", "progressive", "embedder", "cache_lookup", "cache_scale",
              "cache_verify", "cache_hit", "local_model", "mixed_load", "soak"]


def main() -> None:
    args = sys.argv[1:]
    first_option = next((i for i, arg in enumerate(args) if arg.startswith("-")), len(args))
    names, options = args[:first_option] or BENCHMARKS, args[first_option:]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if options and len(names) != 1:
        raise SystemExit(f"options ({' '.join(options)}) apply to one benchmark at a time: name it first")
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        if options:
            module.main(options)
        else:
            sys.argv = sys.argv[:1]  # a benchmark that parses sys.argv itself must not see the names
            module.main()


if __name__ == "__main__":
    main()
