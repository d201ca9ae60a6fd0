"""The ONNX export's manifest: where the export lives, and a missing or damaged one said in one line."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

from services.embedder.backends import check_backend
from services.embedder.onnx_files import (
    FORMAT,
    FP32,
    INT8,
    MANIFEST,
    TOKENIZER,
    Manifest,
    MissingExport,
    export_dir,
    file_entry,
    package_version,
    read_manifest,
)
from shared.config import ConfigError, EmbedderConfig, StartRefused


def fake_export(directory: Path, names: tuple[str, ...] = (FP32, INT8, TOKENIZER)) -> Manifest:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(name.encode() * 100)
    manifest = Manifest(format=FORMAT, model="all-MiniLM-L6-v2", package_version="0.1.0", source_sha256="ab" * 32,
                        max_seq_length=256, files={name: file_entry(directory / name) for name in names})
    (directory / MANIFEST).write_text(manifest.to_json())
    return manifest


def test_the_export_lives_in_the_python_environment_per_package_version():
    assert export_dir() == Path(sys.prefix, "share", "draftgate", "onnx", f"all-MiniLM-L6-v2-{package_version()}")
    assert export_dir("/srv/onnx") == Path("/srv/onnx")


def test_a_complete_export_reads_back_its_manifest(tmp_path: Path):
    written = fake_export(tmp_path)
    assert read_manifest(tmp_path, verify_hashes=True) == written


def test_no_export_is_a_start_refusal_saying_what_to_run(tmp_path: Path):
    with pytest.raises(MissingExport) as error:
        read_manifest(tmp_path)
    assert isinstance(error.value, StartRefused)
    assert str(error.value) == (f"no ONNX export of all-MiniLM-L6-v2 in {tmp_path}: "
                                "run make install (or: python -m services.embedder.export)")


def test_a_file_of_the_wrong_size_is_an_incomplete_export(tmp_path: Path):
    fake_export(tmp_path)
    (tmp_path / INT8).write_bytes(b"cut short")
    with pytest.raises(MissingExport, match=r"incomplete or damaged \(model-int8.onnx\): run make install"):
        read_manifest(tmp_path)


def test_a_changed_byte_is_found_only_when_hashes_are_checked(tmp_path: Path):
    fake_export(tmp_path)
    data = bytearray((tmp_path / FP32).read_bytes())
    data[0] ^= 1
    (tmp_path / FP32).write_bytes(bytes(data))
    assert read_manifest(tmp_path).files[FP32].bytes == len(data)  # the embedder's cheap check at start
    with pytest.raises(MissingExport, match=r"\(model.onnx\)"):
        read_manifest(tmp_path, verify_hashes=True)  # the export script's check before it skips work


def test_a_manifest_naming_too_few_files_or_another_format_is_refused(tmp_path: Path):
    fake_export(tmp_path / "short", names=(FP32, TOKENIZER))
    with pytest.raises(MissingExport, match=r"has no model-int8.onnx"):
        read_manifest(tmp_path / "short")
    manifest = fake_export(tmp_path / "old")
    (tmp_path / "old" / MANIFEST).write_text(dataclasses.replace(manifest, format=FORMAT - 1).to_json())
    with pytest.raises(MissingExport, match=f"is format {FORMAT - 1}, this code reads {FORMAT}"):
        read_manifest(tmp_path / "old")
    (tmp_path / "old" / MANIFEST).write_text("{not json")
    with pytest.raises(MissingExport, match="unreadable manifest"):
        read_manifest(tmp_path / "old")


def test_the_embedder_checks_its_backend_before_loading_anything(tmp_path: Path):
    with pytest.raises(MissingExport, match=re.escape(f"no ONNX export of all-MiniLM-L6-v2 in {tmp_path}")):
        check_backend(EmbedderConfig(backend="onnx-int8", onnx_dir=str(tmp_path)))
    fake_export(tmp_path)
    check_backend(EmbedderConfig(backend="onnx", onnx_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"^embedder.model: the torch backend serves all-MiniLM-L6-v2 only"):
        check_backend(EmbedderConfig(backend="torch", model="bge-small"))
    with pytest.raises(ConfigError, match=r"^embedder.base_url: must be set for the openai backend"):
        check_backend(EmbedderConfig(backend="openai", model="text-embedding-3-small"))
