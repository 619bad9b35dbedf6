"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from smoke_fake_server import FakeServer


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache root for this test ($TIERKIT_CACHE_DIR), so nothing touches the real one."""
    root = tmp_path / "cache"
    monkeypatch.setenv("TIERKIT_CACHE_DIR", str(root))
    return root


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    """The in-test OpenAI-compatible streaming server (tests/support/smoke_fake_server.py), one per
    test module."""
    with FakeServer() as server:
        yield server
