"""Embedding backends: one abstract method, embed_batch, that the micro-batcher feeds; the factory.

onnx (default), onnx-int8: all-MiniLM-L6-v2 on ONNX Runtime (onnx_backend.py); torch: the same model
with sentence-transformers (torch_backend.py); both on the CPU in a thread of their own, so inference
never blocks the event loop. openai: any embeddings model behind an OpenAI-compatible URL.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import openai

from shared.config import EMBEDDER_BACKENDS, ConfigError, EmbedderConfig

LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_BACKENDS = tuple(name for name in EMBEDDER_BACKENDS if name != "openai")  # models in this process
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
    """MiniLM in this process: encode() runs on the backend's one thread of its own, off the event loop."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self.model = LOCAL_MODEL
        self._executor = executor

    @abstractmethod
    def encode(self, texts: list[str]) -> Batch:
        """Embed texts now, on the calling thread, in one go."""

    def serves(self, model: str | None) -> bool:
        return not model or model.lower() in LOCAL_ALIASES

    async def embed_batch(self, texts: list[str]) -> Batch:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.encode, texts)

    def embed_now(self, texts: list[str]) -> Batch:
        """Embed on the backend's own thread and wait: for tools and benchmarks outside an event loop."""
        return self._executor.submit(self.encode, texts).result()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)

    async def close(self) -> None:
        self.shutdown()


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


def check_backend(config: EmbedderConfig) -> None:
    """What the backend needs before it can load: ConfigError (MissingExport for onnx) saying what to fix.

    Cheap (no model is loaded), so a service checks it before it starts serving."""
    if config.backend in LOCAL_BACKENDS and config.model.lower() not in LOCAL_ALIASES:
        raise ConfigError(f"embedder.model: the {config.backend} backend serves {LOCAL_MODEL} only, "
                          f"not {config.model!r}")
    if config.backend.startswith("onnx"):
        from services.embedder.onnx_files import export_dir, read_manifest

        read_manifest(export_dir(config.onnx_dir))
    if config.backend == "openai" and not config.base_url:
        raise ConfigError("embedder.base_url: must be set for the openai backend")


def open_local_backend(config: EmbedderConfig) -> LocalBackend:
    """Load the configured local backend, blocking (seconds): for tools and tests that embed in process."""
    check_backend(config)
    if config.backend == "torch":
        from services.embedder.torch_backend import TorchBackend

        return TorchBackend.open(config.threads)
    if config.backend.startswith("onnx"):
        from services.embedder.onnx_backend import OnnxBackend
        from services.embedder.onnx_files import export_dir

        return OnnxBackend.open_export(export_dir(config.onnx_dir), quantized=config.backend == "onnx-int8",
                                       threads=config.threads)
    raise ConfigError(f"embedder.backend: {config.backend!r} is not a local backend ({', '.join(LOCAL_BACKENDS)})")


async def create_backend(config: EmbedderConfig, env: Mapping[str, str]) -> EmbeddingBackend:
    """The configured backend, loaded off the event loop; ConfigError if it cannot be."""
    if config.backend in LOCAL_BACKENDS:
        return await asyncio.to_thread(open_local_backend, config)
    check_backend(config)
    api_key = env.get(config.api_key_env, "") if config.api_key_env else ""
    client = openai.AsyncOpenAI(base_url=config.base_url, api_key=api_key or "unused", max_retries=1)
    return OpenAIBackend(client, config.model)
