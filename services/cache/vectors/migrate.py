"""A cache directory written by qdrant-client's local mode (the embedded store before Qdrant Edge)
is set aside at start, whole, so the Edge shard starts empty beside it and nothing is lost."""

from __future__ import annotations

from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# What local mode leaves in its directory: meta.json and collection/<name>/storage.sqlite.
LOCAL_MODE_MARKERS = ("meta.json", "collection")


def is_local_mode_dir(path: Path) -> bool:
    return any((path / marker).exists() for marker in LOCAL_MODE_MARKERS)


def set_aside_local_mode(path: Path) -> Path | None:
    """Rename an old local-mode directory to <path>.local-mode (or .local-mode-2, …); returns where it went."""
    if not is_local_mode_dir(path):
        return None
    target = path.with_name(f"{path.name}.local-mode")
    suffix = 2
    while target.exists():
        target = path.with_name(f"{path.name}.local-mode-{suffix}")
        suffix += 1
    path.rename(target)
    log.warning("cache.qdrant_path held a semantic cache in qdrant-client's old local-mode format; moved it "
                "aside and starting an empty Qdrant Edge cache (delete the old directory when done)",
                path=str(path), moved_to=str(target))
    return target
