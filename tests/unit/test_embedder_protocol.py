"""The embeddings wire format: what requests are accepted, and responses the openai types read back."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from openai.types import CreateEmbeddingResponse

from services.embedder.backends import Batch, split_tokens
from services.embedder.protocol import MAX_INPUTS, build_response, parse_request
from shared.errors import InvalidRequest


def test_a_string_or_a_list_of_strings_is_accepted() -> None:
    assert parse_request({"input": "hello", "model": "m"}).texts == ["hello"]
    assert parse_request({"input": ["a", "b"]}).texts == ["a", "b"]


@pytest.mark.parametrize("tokens", [[1, 2, 3], [[1, 2], [3]]])
def test_token_arrays_are_rejected_with_a_clear_message(tokens: list) -> None:
    with pytest.raises(InvalidRequest, match="Token arrays are not supported") as err:
        parse_request({"input": tokens})
    assert err.value.param == "input"


@pytest.mark.parametrize(("body", "param"), [
    ({}, "input"),
    ({"input": []}, "input"),
    ({"input": ["ok", 3]}, "input"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "dimensions": 0}, "dimensions"),
    ({"input": ["x"] * (MAX_INPUTS + 1)}, "input"),
])
def test_bad_requests_name_the_bad_field(body: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_request(body)
    assert err.value.param == param


def test_float_and_base64_responses_carry_the_same_vectors_and_usage() -> None:
    vectors = np.asarray([[0.25, -1.5, 3.0], [1.0, 0.0, -0.125]], dtype=np.float32)
    batch = Batch(vectors, [4, 6])

    floats = CreateEmbeddingResponse.model_validate_json(build_response(batch, "m", "float"))
    encoded = json.loads(build_response(batch, "m", "base64"))

    assert [d.embedding for d in floats.data] == vectors.tolist()
    assert [d.index for d in floats.data] == [0, 1]
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 10
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4").tolist() for d in encoded["data"]]
    assert decoded == vectors.tolist()
    assert encoded["usage"] == {"prompt_tokens": 10, "total_tokens": 10}


@pytest.mark.parametrize(("total", "texts"), [(10, ["a", "bbbb", "ccccc"]), (3, ["x"] * 7), (0, ["a"]), (7, [""])])
def test_split_tokens_shares_a_batch_total_by_length(total: int, texts: list[str]) -> None:
    shares = split_tokens(total, texts)
    assert sum(shares) == total
    assert len(shares) == len(texts)
    assert all(s >= 0 for s in shares)
