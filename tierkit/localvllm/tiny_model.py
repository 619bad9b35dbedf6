"""The lab's tiny Llama: generated here, never downloaded, shaped like catalog key "tiny-llama".

`make_tiny_model.py` (stand-alone, run with the vLLM venv's python) writes the weights, a BPE
tokenizer and a chat template; this module feeds it the catalog's shape plus the few figures the
catalog does not carry (vocabulary, MLP width, seed), and caches the result keyed on all of that,
the generator's source and the venv it ran in.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from tierkit.cache import build_log, ensure_dir, is_ready, keyed_path, recipe_key, run_logged
from tierkit.catalog import MODELS
from tierkit.localvllm.vllm_venv import ensure_vllm_venv, offline_env, venv_python, venv_recipe

CATALOG_KEY = "tiny-llama"
SERVED_NAME = CATALOG_KEY
GENERATOR = Path(__file__).with_name("make_tiny_model.py")
VOCAB_SIZE = 512
INTERMEDIATE_SIZE = 512
SEED = 0


def model_spec() -> dict[str, int]:
    """The generator's input: the catalog entry's shape plus vocabulary, MLP width and seed."""
    entry = MODELS[CATALOG_KEY]
    return {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": entry.hidden_size,
        "intermediate_size": INTERMEDIATE_SIZE,
        "num_hidden_layers": entry.layers,
        "num_attention_heads": entry.attention_heads,
        "num_key_value_heads": entry.kv_heads,
        "head_dim": entry.head_dim,
        "max_position_embeddings": entry.default_context,
        "seed": SEED,
    }


def llama_parameter_count(spec: dict[str, int]) -> int:
    """Parameters of an untied Llama of this shape (embeddings, attention, MLP, norms, head)."""
    hidden, vocab = spec["hidden_size"], spec["vocab_size"]
    q_out = spec["num_attention_heads"] * spec["head_dim"]
    kv_out = spec["num_key_value_heads"] * spec["head_dim"]
    attention = hidden * q_out + 2 * hidden * kv_out + q_out * hidden
    mlp = 3 * hidden * spec["intermediate_size"]
    layer = attention + mlp + 2 * hidden  # two RMSNorms
    return 2 * vocab * hidden + spec["num_hidden_layers"] * layer + hidden  # + final norm


def model_recipe() -> dict[str, Any]:
    """What the model's files depend on (its cache key)."""
    return {
        "spec": model_spec(),
        "generator": hashlib.sha256(GENERATOR.read_bytes()).hexdigest(),
        "venv": recipe_key(venv_recipe()),
    }


def tiny_model_path() -> Path:
    """Where the tiny model for the current recipe lives (built or not)."""
    return keyed_path("tiny-llama", model_recipe())


def generate(out_dir: Path, python: Path, log: Path) -> None:
    """Run the generator with `python` into `out_dir` (which must exist); files end up 0644,
    readable by a non-root vLLM when lab hosts mount them."""
    cmd = [str(python), str(GENERATOR), str(out_dir), json.dumps(model_spec())]
    run_logged(cmd, log, what="tiny model", env=offline_env())
    for file in out_dir.iterdir():
        file.chmod(0o644)


def ensure_tiny_model() -> Path:
    """The tiny model's directory, generating it (and the vLLM venv) first if needed."""
    recipe = model_recipe()
    path = tiny_model_path()
    if is_ready(path):
        return path
    python = venv_python(ensure_vllm_venv())
    log = build_log(path.name)
    return ensure_dir(path, recipe, lambda work: generate(work, python, log))


def safetensors_parameter_count(model_dir: Path) -> int:
    """Parameters stored in a directory's *.safetensors files, read from their headers alone."""
    total = 0
    for file in sorted(model_dir.glob("*.safetensors")):
        with open(file, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_len))
        for name, tensor in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in tensor["shape"]:
                count *= dim
            total += count
    return total
