"""Append-only JSON-lines files: the calibration steps' working records (traces, grades).

Each record is one line, written whole and flushed, so a run stopped at any point (Ctrl-C, a crash,
a full disk) leaves every finished record readable and the next run resumes after them. The one thing
a killed process can leave is a torn last line: readers skip it, and an appender cuts it off before
writing, so it never glues itself to the next record. A broken line anywhere else is damage nobody
should paper over: it is an error naming the file and the line.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO


class RecordFileError(ValueError):
    """A records file that is not JSON lines (other than a torn last line)."""


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete record of `path` (none if it does not exist), skipping a torn last line. A `.gz`
    file is read through gzip (the committed calibration data: docs/calibration/data/traces.jsonl.gz)."""
    if not path.exists():
        return
    data = path.read_bytes()
    lines = (gzip.decompress(data) if path.suffix == ".gz" else data).split(b"\n")
    tail = lines.pop()  # after the last newline: empty, a record missing only its newline, or torn
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield _record(path, number, line)
    if _whole(tail):
        yield json.loads(tail)


def _record(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise RecordFileError(f"{path}:{number}: not a JSON record ({exc})") from None
    if not isinstance(record, dict):
        raise RecordFileError(f"{path}:{number}: a record must be a JSON object")
    return record


def _whole(tail: bytes) -> bool:
    """Whether a last line without its newline is a whole record (cut exactly before the newline)."""
    if not tail.strip():
        return False
    try:
        return isinstance(json.loads(tail), dict)
    except ValueError:
        return False


def repair_tail(path: Path) -> int:
    """Make `path` end in a newline before appending: a torn last line is cut off, a whole record
    missing only its newline gets it. The number of bytes cut (0 if nothing was torn)."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    start = data.rfind(b"\n") + 1
    with path.open("rb+") as handle:
        if _whole(data[start:]):
            handle.seek(0, os.SEEK_END)
            handle.write(b"\n")
            return 0
        handle.truncate(start)
    return len(data) - start


class Appender:
    """Appends records to a JSON-lines file, one flushed line each; a torn tail is cut when opened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self._handle: TextIO | None = None

    def __enter__(self) -> Appender:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._handle = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def append(self, record: dict[str, Any]) -> None:
        """One record as one line, written in a single call and flushed to the OS at once."""
        if self._handle is None:
            raise RuntimeError("Appender used outside its `with` block")
        self._handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._handle.flush()
        self.written += 1
