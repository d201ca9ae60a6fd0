"""embedder.* keys: the backend names, the thread count, the ONNX export's directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import DEFAULT_CONFIG_PATH, EMBEDDER_BACKENDS, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_default_backend_is_onnx_on_one_thread_from_the_installed_export(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.yaml", DEFAULT_CONFIG_PATH):
        embedder = load_config(path, env={}).embedder
        assert (embedder.backend, embedder.threads, embedder.onnx_dir) == ("onnx", 1, None)


@pytest.mark.parametrize("backend", EMBEDDER_BACKENDS)
def test_every_backend_can_be_chosen_from_yaml_or_the_environment(tmp_path: Path, backend: str) -> None:
    assert load_config(write(tmp_path, f"embedder:\n  backend: {backend}\n"), env={}).embedder.backend == backend
    env = {"DRAFTGATE_EMBEDDER_BACKEND": backend}
    assert load_config(tmp_path / "missing.yaml", env=env).embedder.backend == backend


def test_the_old_local_backend_name_says_which_new_names_replace_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^embedder.backend: 'local' was split in two: 'onnx' .* or 'torch'"):
        load_config(tmp_path / "missing.yaml", env={"DRAFTGATE_EMBEDDER_BACKEND": "local"})


def test_an_unknown_backend_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^embedder.backend: must be one of 'onnx', 'onnx-int8', 'torch', 'openai'$"):
        load_config(write(tmp_path, "embedder:\n  backend: tensorflow\n"), env={})


def test_torch_threads_says_it_was_renamed_threads(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^embedder.torch_threads: renamed embedder.threads"):
        load_config(write(tmp_path, "embedder:\n  torch_threads: 2\n"), env={})


def test_threads_zero_means_one_per_core_and_below_zero_is_refused(tmp_path: Path) -> None:
    assert load_config(tmp_path / "missing.yaml", env={"DRAFTGATE_EMBEDDER_THREADS": "0"}).embedder.threads == 0
    with pytest.raises(ConfigError, match=r"^embedder.threads: must be >= 0 \(0: one per core\)$"):
        load_config(tmp_path / "missing.yaml", env={"DRAFTGATE_EMBEDDER_THREADS": "-1"})
    with pytest.raises(ConfigError, match=r"^embedder.threads: expected int, got 'two'$"):
        load_config(tmp_path / "missing.yaml", env={"DRAFTGATE_EMBEDDER_THREADS": "two"})


def test_onnx_dir_is_a_directory_or_null(tmp_path: Path) -> None:
    env = {"DRAFTGATE_EMBEDDER_ONNX_DIR": str(tmp_path)}
    assert load_config(tmp_path / "missing.yaml", env=env).embedder.onnx_dir == str(tmp_path)
    assert load_config(tmp_path / "missing.yaml", env={"DRAFTGATE_EMBEDDER_ONNX_DIR": "null"}).embedder.onnx_dir is None
    with pytest.raises(ConfigError, match=r"^embedder.onnx_dir: must be a directory"):
        load_config(write(tmp_path, "embedder:\n  onnx_dir: ''\n"), env={})
