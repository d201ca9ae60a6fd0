"""The embedder over HTTP with the real MiniLM, called through the official openai client."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from aiohttp.test_utils import TestServer

from services.embedder.app import create_app
from shared.config import EmbedderConfig, load_config
from tests.integration.minilm import embedder_app, local_backend
from tests.support import REPO, Service, free_port

MINILM = "all-MiniLM-L6-v2"


@pytest.fixture
async def embedder(aiohttp_server) -> TestServer:
    return await aiohttp_server(embedder_app())


@pytest.fixture
async def client(embedder: TestServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=str(embedder.make_url("/v1")), api_key="unused") as client:
        yield client


async def alone(text: str) -> np.ndarray:
    """The text's embedding from a model call of its own."""
    return (await local_backend().embed_batch([text])).vectors[0]


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def test_a_string_and_a_list_come_back_as_normalised_384_dimension_vectors(client: openai.AsyncOpenAI) -> None:
    one = await client.embeddings.create(model=MINILM, input="What is the capital of France?")
    many = await client.embeddings.create(model=MINILM, input=["Paris", "Berlin", "Madrid"], encoding_format="float")

    assert len(one.data) == 1 and len(many.data) == 3
    assert [d.index for d in many.data] == [0, 1, 2]
    assert len(one.data[0].embedding) == 384
    assert np.linalg.norm(one.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    assert one.usage.prompt_tokens == one.usage.total_tokens > 0
    assert one.model == MINILM
    assert np.allclose(one.data[0].embedding, await alone("What is the capital of France?"), atol=1e-5)


async def test_the_base64_default_of_the_openai_client_and_floats_agree(client: openai.AsyncOpenAI) -> None:
    encoded = await client.embeddings.create(model=MINILM, input="hello there")
    floats = await client.embeddings.create(model=MINILM, input="hello there", encoding_format="float")
    assert np.allclose(encoded.data[0].embedding, floats.data[0].embedding, atol=0)


async def test_fifty_concurrent_callers_each_get_their_own_vectors_in_order(
        client: openai.AsyncOpenAI, embedder: TestServer) -> None:
    requests = [[f"Caller {c} asks question number {i} about topic {c * 7 % 13}" for i in range(1 + c % 3)]
                for c in range(50)]

    answers = await asyncio.gather(*(client.embeddings.create(model=MINILM, input=texts) for texts in requests))

    for texts, answer in zip(requests, answers, strict=True):
        assert [d.index for d in answer.data] == list(range(len(texts)))
        for text, item in zip(texts, answer.data, strict=True):
            assert np.allclose(item.embedding, await alone(text), atol=1e-5), text
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(str(embedder.make_url("/metrics")))).text
    assert metric(metrics, "draftgate_embedder_inputs_total") == sum(len(t) for t in requests)
    assert metric(metrics, "draftgate_embedder_batch_size_count") < len(requests)  # calls were shared


async def test_unknown_models_and_token_arrays_are_refused(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="Token arrays are not supported"):
        await client.embeddings.create(model=MINILM, input=[101, 102])


async def test_the_openai_backend_relays_to_any_openai_compatible_embedder(
        aiohttp_server, embedder: TestServer) -> None:
    base = load_config(env={})
    relay_config = dataclasses.replace(base, embedder=EmbedderConfig(
        backend="openai", model=MINILM, base_url=str(embedder.make_url("/v1"))))
    relay = await aiohttp_server(create_app(relay_config, env={}))
    async with openai.AsyncOpenAI(base_url=str(relay.make_url("/v1")), api_key="unused") as client:
        answer = await client.embeddings.create(model=MINILM, input=["one question", "another question here"])
    assert np.allclose(answer.data[1].embedding, await alone("another question here"), atol=1e-5)
    assert answer.usage.prompt_tokens > 0


@pytest.mark.parametrize(("backend", "min_cosine"), [("onnx", 0.99999), ("onnx-int8", 0.95), ("torch", 0.99999)])
def test_the_embedder_runs_as_a_process_with_health_and_metrics_on_each_local_backend(
        tmp_path: Path, backend: str, min_cosine: float) -> None:
    port = free_port()
    env = {"DRAFTGATE_EMBEDDER_PORT": str(port), "DRAFTGATE_EMBEDDER_BACKEND": backend}
    service = Service("services.embedder", env, port, tmp_path / "embedder.log")
    service.start(timeout_s=180)
    try:
        health = httpx.get(service.url + "/health").json()
        client = openai.OpenAI(base_url=service.url + "/v1", api_key="unused")
        answer = client.embeddings.create(model=MINILM, input="What is the capital of France?")
        metrics = httpx.get(service.url + "/metrics").text
    finally:
        assert service.stop() == 0, service.logs()
    assert health["backend"] == backend and health["model"] == MINILM
    vector = np.asarray(answer.data[0].embedding)
    assert vector.shape == (384,)
    reference = local_backend().encode(["What is the capital of France?"]).vectors[0]  # onnx, in this process
    assert float(vector @ reference) >= min_cosine
    assert metric(metrics, "draftgate_embedder_requests_total") == 1


def test_an_embedder_without_its_onnx_export_exits_with_one_line_saying_to_run_make_install(tmp_path: Path) -> None:
    empty = tmp_path / "no-export"
    empty.mkdir()
    env = {**os.environ, "DRAFTGATE_EMBEDDER_PORT": str(free_port()), "DRAFTGATE_EMBEDDER_ONNX_DIR": str(empty)}
    done = subprocess.run([sys.executable, "-m", "services.embedder"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (f"draftgate embedder: no ONNX export of all-MiniLM-L6-v2 in {empty}: "
                           "run make install (or: python -m services.embedder.export)\n")
