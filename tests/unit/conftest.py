"""Fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache root for this test ($TIERKIT_CACHE_DIR), so nothing touches the real one."""
    root = tmp_path / "cache"
    monkeypatch.setenv("TIERKIT_CACHE_DIR", str(root))
    return root
