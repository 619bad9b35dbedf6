"""Files tierkit writes for a configure run (the inventory, the generated VRRP password) are whole
or absent, whenever the run is killed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tierkit.atomicfile import write_atomic
from tierkit.secretfile import read_or_create


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


def test_a_secret_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "vrrp-password"
    first = read_or_create(path, lambda: "s3cret")
    assert first == "s3cret" and path.read_text() == "s3cret\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create(path, lambda: "other") == "s3cret"
    assert [p.name for p in path.parent.iterdir()] == ["vrrp-password"]


def test_an_empty_secret_left_by_a_killed_run_is_made_again(tmp_path: Path) -> None:
    path = tmp_path / "vrrp-password"
    path.touch(mode=0o600)
    assert read_or_create(path, lambda: "fresh") == "fresh"
    assert path.read_text() == "fresh\n" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_secret_another_run_made_meanwhile_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vrrp-password"

    def make() -> str:
        path.write_text("theirs\n")  # the other run links its secret while this one makes its own
        return "mine"

    assert read_or_create(path, make) == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["vrrp-password"]
