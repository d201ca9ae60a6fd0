"""The hot-path JSON codec gives what the stdlib gives, including where orjson alone refuses."""

from __future__ import annotations

import json
import math

import pytest

from shared import fastjson


def test_round_trips_unicode_compactly_like_the_stdlib() -> None:
    value = {"content": "Grüße, 世界", "logprob": -0.25, "top_logprobs": [{"token": "a", "bytes": [97]}]}
    assert fastjson.dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert fastjson.loads(fastjson.dumps(value)) == value


def test_reads_the_nan_and_infinity_literals_python_servers_emit() -> None:
    parsed = fastjson.loads(b'{"logprob": -Infinity, "other": NaN}')
    assert parsed["logprob"] == -math.inf and math.isnan(parsed["other"])


@pytest.mark.parametrize("number", [2**65, 2**64, -(2**63) - 1, 123456789012345678901234567890, 2**64 - 1])
def test_integers_beyond_64_bits_survive_both_ways_exactly(number: int) -> None:
    parsed = fastjson.loads(f'{{"seed": {number}}}'.encode())["seed"]
    assert type(parsed) is int and parsed == number  # orjson alone reads them as floats
    assert fastjson.dumps({"seed": number}) == f'{{"seed":{number}}}'.encode()
    assert fastjson.loads(f'{{"seed": {number}}}') == {"seed": number}


def test_malformed_json_still_raises_a_value_error() -> None:
    with pytest.raises(ValueError):
        fastjson.loads(b'{"messages": [')


@pytest.mark.parametrize("nested", [b"[" * 2048 + b"]" * 2048, b'{"a":' * 2048 + b"1" + b"}" * 2048,
                                    b"[" * 100_000])
def test_json_nested_beyond_the_parsers_is_a_value_error_not_a_recursion_error(nested: bytes) -> None:
    with pytest.raises(fastjson.TooDeep):  # a ValueError, like any other malformed JSON
        fastjson.loads(nested)
