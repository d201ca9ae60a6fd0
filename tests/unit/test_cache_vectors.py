"""Pure parts of the vector stores: the worker's wire format, both engines' filters, the stored
point, and how an old local-mode directory is recognised."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

from qdrant_client import models

from services.cache.keys import request_keys
from services.cache.semantic import SemanticEntry, point
from services.cache.vectors import edge_wire as wire
from services.cache.vectors.base import Hit, Point, Scope
from services.cache.vectors.edge_shard import edge_filter
from services.cache.vectors.migrate import is_local_mode_dir, set_aside_local_mode
from services.cache.vectors.server import server_filter


def test_frames_read_back_in_order_and_a_cut_frame_is_the_end() -> None:
    stream = io.BytesIO(wire.frame(["search", b"\x00\x01", None, 0.8]) + wire.frame([True, {"a": [1, 2]}]))
    assert wire.read_frame(stream) == ["search", b"\x00\x01", None, 0.8]
    assert wire.read_frame(stream) == [True, {"a": [1, 2]}]
    assert wire.read_frame(stream) is None
    assert wire.read_frame(io.BytesIO(wire.frame(["count"])[:-1])) is None


def test_vectors_travel_as_float32() -> None:
    packed = wire.pack_vector([0.5, -0.25, 1.0])
    assert len(packed) == 12
    assert wire.unpack_vector(packed) == [0.5, -0.25, 1.0]


def test_scopes_points_and_hits_survive_the_wire() -> None:
    scope = Scope("t", "p", live_at=12.5, expired_at=None)
    assert wire.unpack_scope(wire.unframe(wire.frame(wire.pack_scope(scope))[4:])) == scope
    points = [Point("0b1d", [0.5, 0.25], {"completion": {"x": 1}, "expires_at": 9.5})]
    assert wire.unpack_points(wire.pack_points(points)) == points
    hits = [Hit({"text": "hi"}, 0.93)]
    assert wire.unpack_hits(wire.pack_hits(hits)) == hits


def test_both_engines_filter_on_exactly_the_conditions_a_scope_names() -> None:
    server = server_filter(Scope("t", None, live_at=10.0))
    assert server.must == [models.FieldCondition(key="tenant", match=models.MatchValue(value="t")),
                           models.FieldCondition(key="expires_at", range=models.Range(gt=10.0))]
    assert server_filter(Scope(expired_at=5.0)).must == [
        models.FieldCondition(key="expires_at", range=models.Range(lte=5.0))]
    assert server_filter(Scope()).must == []
    assert [c.key for c in edge_filter(Scope("t", "p", live_at=1.0)).must] == ["tenant", "partition", "expires_at"]
    assert edge_filter(Scope()).must == []


def test_a_point_carries_the_keys_the_filters_use_and_an_id_from_the_exact_key() -> None:
    keys = request_keys({"model": "auto", "messages": [{"role": "user", "content": "Hello there?"}]}, "tenant")
    stored = point(SemanticEntry(keys, [1.0, 0.0], {"id": "c"}, 99.0))
    assert stored.id == str(uuid.UUID(keys.exact[:32]))
    assert stored.payload == {"tenant": keys.tenant, "partition": keys.partition, "expires_at": 99.0,
                              "text": keys.semantic_text, "completion": {"id": "c"}}


def test_only_a_local_mode_directory_is_set_aside_and_never_over_an_earlier_one(tmp_path: Path) -> None:
    edge = tmp_path / "edge"
    (edge / "draftgate_cache").mkdir(parents=True)
    assert not is_local_mode_dir(edge)
    assert set_aside_local_mode(edge) is None
    assert set_aside_local_mode(tmp_path / "missing") is None

    for _ in range(2):
        old = tmp_path / "qdrant"
        (old / "collection" / "draftgate_cache").mkdir(parents=True)
        (old / "meta.json").write_text("{}")
        assert is_local_mode_dir(old)
        moved = set_aside_local_mode(old)
        assert moved is not None and (moved / "meta.json").exists() and not old.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edge", "qdrant.local-mode", "qdrant.local-mode-2"]
