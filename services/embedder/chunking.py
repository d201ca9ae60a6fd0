"""Which inputs of a batch share one model run: the split that costs the fewest padded tokens.

A model run pads every input to the longest one in it, so one 256-token message among 31 short
questions would make all 32 cost 256 tokens. Splitting costs too (each run has a fixed overhead),
so inputs are sorted by length and cut where the padding saved outweighs another run's overhead:
an exact dynamic programme over the sorted lengths (n <= max_batch, so n^2 steps are nothing).
"""

from __future__ import annotations

# One model run's fixed cost in tokens' worth of work: ONNX Runtime on one core, MiniLM, measured
# at about 1.3 ms per run against 0.12 ms per token (bench/embedder.py, in-process section).
RUN_OVERHEAD_TOKENS = 12


def plan_runs(lengths: list[int], overhead_tokens: int = RUN_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices into `lengths` grouped into model runs, shortest inputs first.

    Minimises sum over runs of (overhead_tokens + inputs in the run x its longest input).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sorted_lengths = [lengths[i] for i in order]
    # best[j]: the cheapest way to run the j shortest inputs; cut[j]: where its last run starts.
    best = [0] * (len(order) + 1)
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        longest = sorted_lengths[j - 1]
        best[j], cut[j] = min((best[i] + overhead_tokens + (j - i) * longest, i) for i in range(j))
    runs: list[list[int]] = []
    end = len(order)
    while end > 0:
        runs.append(order[cut[end]:end])
        end = cut[end]
    return runs[::-1]
