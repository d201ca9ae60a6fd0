"""The onnx and onnx-int8 backends: MiniLM on ONNX Runtime, from the export `make install` writes.

No torch at serving time: the `tokenizers` library cuts the text (truncated to sentence-transformers'
256 tokens), the graph does BERT, mean pooling and normalisation. Inputs of a batch are grouped by
length into model runs (chunking.py) so a long message does not pad every short one to its length.
Runs happen on one thread of the backend's own, off the event loop; ONNX Runtime releases the GIL.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from services.embedder.backends import Batch, LocalBackend
from services.embedder.chunking import plan_runs
from services.embedder.onnx_files import FP32, INT8, TOKENIZER, read_manifest


def load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()  # tokenizer.json pads to 128; we pad each run to its own longest input
    tokenizer.enable_truncation(max_length)
    return tokenizer


def pad(rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and attention_mask for token id rows of unequal length."""
    ids = np.full((len(rows), max(map(len, rows))), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return ids, mask


def session_options(threads: int) -> ort.SessionOptions:
    """threads: intra-op threads (0: ONNX Runtime's default, one per core)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads would spin for work on cores the other services need (see embedder.threads).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxBackend(LocalBackend):
    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer, executor: ThreadPoolExecutor) -> None:
        super().__init__(executor)
        self._session = session
        self._tokenizer = tokenizer
        self._pad_id = tokenizer.token_to_id("[PAD]") or 0
        self._dimensions = int(session.get_outputs()[0].shape[1])

    @classmethod
    def open(cls, model: Path, tokenizer: Path, max_length: int, threads: int) -> OnnxBackend:
        """Load the graph (blocking: about a second)."""
        session = ort.InferenceSession(str(model), session_options(threads), providers=["CPUExecutionProvider"])
        backend = cls(session, load_tokenizer(tokenizer, max_length),
                      ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed"))
        backend.encode(["warm up"])  # the first run allocates; pay for it before serving
        return backend

    @classmethod
    def open_export(cls, directory: Path, *, quantized: bool, threads: int) -> OnnxBackend:
        """The fp32 or int8 graph of a complete export (MissingExport otherwise)."""
        manifest = read_manifest(directory)
        return cls.open(directory / (INT8 if quantized else FP32), directory / TOKENIZER, manifest.max_seq_length,
                        threads)

    def encode(self, texts: list[str]) -> Batch:
        rows = [encoding.ids for encoding in self._tokenizer.encode_batch(texts, add_special_tokens=True)]
        lengths = [len(row) for row in rows]
        vectors = np.empty((len(texts), self._dimensions), dtype=np.float32)
        for run in plan_runs(lengths):
            ids, mask = pad([rows[i] for i in run], self._pad_id)
            vectors[run] = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return Batch(vectors, lengths)
