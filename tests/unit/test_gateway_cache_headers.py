"""The headers a cache hit carries, and the OpenAPI document that announces them."""

from __future__ import annotations

from services.gateway.headers import cache_hit_headers
from services.gateway.openapi import openapi_document
from shared.config import load_config


def test_a_semantic_hit_names_the_checks_that_passed_it() -> None:
    headers = cache_hit_headers("r", 0.0, "semantic", 0.91234, verified="learned+drafter")
    assert (headers["X-Cache"], headers["X-Cache-Similarity"], headers["X-Cache-Verified"]) == (
        "semantic", "0.9123", "learned+drafter")


def test_an_exact_hit_carries_no_verifier() -> None:
    headers = cache_hit_headers("r", 0.0, "exact", 1.0)
    assert (headers["X-Cache"], headers["X-Cache-Similarity"]) == ("exact", "1.0000")
    assert "X-Cache-Verified" not in headers


def test_the_openapi_document_lists_the_cache_headers_as_optional() -> None:
    answer = openapi_document(load_config(env={}))["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]
    cache = {name: header for name, header in answer["headers"].items() if name.startswith("X-Cache")}
    assert set(cache) == {"X-Cache", "X-Cache-Similarity", "X-Cache-Verified"}
    assert not any(header["required"] for header in cache.values())
    assert answer["headers"]["X-Routing-Decision"]["required"] is True
