"""The ONNX backends against sentence-transformers on torch, on a fixed sentence set.

The cache's decisions rest on cosine similarities, so the default backend must give the same
vectors (cosine >= 0.99 to torch's, per sentence) and the same similarity between any two sentences
(within 0.01). onnx (fp32) does, to float rounding; onnx-int8 does not, and is kept as an option with
its measured distance asserted, so a change that makes it worse is seen.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services.embedder.backends import Batch, LocalBackend, open_local_backend
from services.embedder.onnx_backend import OnnxBackend
from services.embedder.onnx_files import FP32, INT8, export_dir, read_manifest
from shared.config import EmbedderConfig
from tests.integration.embedding_sentences import SENTENCES
from tests.support import REPO

MIN_COSINE = 0.99  # each sentence's vector against torch's
MAX_SIMILARITY_SHIFT = 0.01  # any pair's cosine similarity against torch's
# onnx-int8, as measured (README): per-sentence cosine 0.962 at worst, pair similarities off by up to 0.047.
INT8_MIN_COSINE = 0.95
INT8_MAX_SIMILARITY_SHIFT = 0.06


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, LocalBackend]]:
    loaded = {name: open_local_backend(EmbedderConfig(backend=name)) for name in ("torch", "onnx", "onnx-int8")}
    yield loaded
    for backend in loaded.values():
        backend.shutdown()


@pytest.fixture(scope="module")
def embedded(backends: dict[str, LocalBackend]) -> dict[str, Batch]:
    """Each backend's embeddings of SENTENCES, in batches of 8 as the micro-batcher might send them."""
    return {name: Batch.concat([backend.encode(SENTENCES[i:i + 8]) for i in range(0, len(SENTENCES), 8)])
            for name, backend in backends.items()}


def cosines_to_torch(embedded: dict[str, Batch], name: str) -> np.ndarray:
    return np.sum(embedded[name].vectors * embedded["torch"].vectors, axis=1)


def similarity_shift(embedded: dict[str, Batch], name: str) -> float:
    ours, theirs = embedded[name].vectors, embedded["torch"].vectors
    return float(np.max(np.abs(ours @ ours.T - theirs @ theirs.T)))


def test_onnx_gives_torchs_vector_for_every_sentence(embedded: dict[str, Batch]) -> None:
    cosines = cosines_to_torch(embedded, "onnx")
    assert len(cosines) == len(SENTENCES) >= 50
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= MIN_COSINE, SENTENCES[worst]


def test_onnx_gives_torchs_similarity_for_every_pair_so_the_cache_decides_alike(embedded: dict[str, Batch]) -> None:
    assert similarity_shift(embedded, "onnx") <= MAX_SIMILARITY_SHIFT


def test_the_default_backend_is_one_that_keeps_torchs_cache_decisions(embedded: dict[str, Batch]) -> None:
    default = EmbedderConfig().backend
    assert cosines_to_torch(embedded, default).min() >= MIN_COSINE
    assert similarity_shift(embedded, default) <= MAX_SIMILARITY_SHIFT


def test_int8_is_further_from_torch_than_the_bound_and_no_further_than_measured(embedded: dict[str, Batch]) -> None:
    cosines = cosines_to_torch(embedded, "onnx-int8")
    assert cosines.min() < MIN_COSINE  # why it is not the default; if this fails, int8 got good enough: measure it
    assert cosines.min() >= INT8_MIN_COSINE
    assert similarity_shift(embedded, "onnx-int8") <= INT8_MAX_SIMILARITY_SHIFT


@pytest.mark.parametrize("name", ["onnx", "onnx-int8"])
def test_token_counts_are_torchs_with_the_same_256_token_truncation(embedded: dict[str, Batch], name: str) -> None:
    assert embedded[name].tokens == embedded["torch"].tokens
    assert max(embedded[name].tokens) == 256
    assert np.allclose(np.linalg.norm(embedded[name].vectors, axis=1), 1.0, atol=1e-5)


def mixed_batch_and_alone(backend: LocalBackend) -> tuple[np.ndarray, np.ndarray]:
    """A batch with long inputs at both ends (so several model runs), and each of its inputs embedded alone."""
    mixed = [SENTENCES[-3], *SENTENCES[:20], SENTENCES[-1]]
    alone = np.stack([backend.encode([text]).vectors[0] for text in mixed])
    return backend.encode(mixed).vectors, alone


def test_onnx_embeds_a_sentence_the_same_alone_and_in_a_batch_of_mixed_lengths(
        backends: dict[str, LocalBackend]) -> None:
    together, alone = mixed_batch_and_alone(backends["onnx"])
    assert np.allclose(together, alone, atol=1e-5)


def test_int8_vectors_depend_on_their_batch_mates_no_more_than_measured(backends: dict[str, LocalBackend]) -> None:
    # Dynamic quantisation scales activations per batch, so a sentence's int8 vector shifts with the
    # others in its model call (cosine 0.947 at worst on this set): one more reason it is not the default.
    together, alone = mixed_batch_and_alone(backends["onnx-int8"])
    assert np.sum(together * alone, axis=1).min() >= INT8_MIN_COSINE - 0.01


def test_the_export_command_writes_a_complete_export_once_and_then_skips(tmp_path: Path) -> None:
    target = tmp_path / "onnx"
    command = [sys.executable, "-m", "services.embedder.export", "--out", str(target)]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=True)

    assert f"wrote {target}" in first.stdout
    assert again.stdout.strip() == f"ONNX export of all-MiniLM-L6-v2 is up to date: {target}"
    manifest = read_manifest(target, verify_hashes=True)
    assert set(manifest.files) >= {FP32, INT8} and manifest.max_seq_length == 256
    installed = OnnxBackend.open_export(export_dir(), quantized=False, threads=1)
    fresh = OnnxBackend.open_export(target, quantized=False, threads=1)
    try:
        assert np.allclose(fresh.encode(SENTENCES[:8]).vectors, installed.encode(SENTENCES[:8]).vectors, atol=1e-6)
    finally:
        fresh.shutdown()
        installed.shutdown()
