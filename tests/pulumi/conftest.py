"""Fixtures of the Pulumi program's mocks tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """~/.ssh/id_ed25519 and its .pub in a temporary HOME (the aws blocks name them)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    d = tmp_path / ".ssh"
    d.mkdir()
    (d / "id_ed25519").write_text("PRIVATE\n")
    (d / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockKeyForTests tierkit\n")
    return d
