"""Cosine similarity of every pair, embedded in process by the embedder's own backend factory."""

from __future__ import annotations

import asyncio
import os

import numpy as np
from tqdm import tqdm

from services.embedder.backends import create_backend
from services.router.calibration.cache_pairs.pairs import LabelledPair, texts
from shared.config import EmbedderConfig

BATCH = 64


def cosines(pairs: list[LabelledPair], config: EmbedderConfig, *, progress: bool = True) -> list[float]:
    """One cosine per pair, in order, from unit-normalised embeddings of the pairs' semantic forms."""
    vectors = asyncio.run(embed_all(texts(pairs), config, progress=progress))
    return [float(np.dot(vectors[p.query], vectors[p.cached])) for p in pairs]


async def embed_all(inputs: list[str], config: EmbedderConfig, *, progress: bool = True) -> dict[str, np.ndarray]:
    backend = await create_backend(config, os.environ)
    out: dict[str, np.ndarray] = {}
    try:
        with tqdm(total=len(inputs), desc=f"embedding ({config.backend})", unit="text", disable=not progress) as bar:
            for start in range(0, len(inputs), BATCH):
                chunk = inputs[start:start + BATCH]
                batch = await backend.embed_batch(chunk)
                for text, vector in zip(chunk, batch.vectors, strict=True):
                    out[text] = vector / max(float(np.linalg.norm(vector)), 1e-12)
                bar.update(len(chunk))
    finally:
        await backend.close()
    return out
