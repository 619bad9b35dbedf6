"""Files tierkit writes for a configure run (the inventory) are whole or absent, whenever the run
is killed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tierkit.atomicfile import write_atomic


def test_write_atomic_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "hosts.yml"
    target.write_text("old\n")
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["hosts.yml"]


def test_a_write_cut_short_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "hosts.yml"
    target.write_text("old\n")

    def killed(*args: object) -> None:
        raise KeyboardInterrupt  # the run dies between the write and the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["hosts.yml"]

