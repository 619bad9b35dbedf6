"""The rehearsal record: written atomically, 0600, gone when empty; a broken one is one error line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tierkit.errors import TierkitError
from tierkit.rehearsal.record import RecordedCommand, RecordStore, record_path


def entry(urn: str, deps: list[str] | None = None) -> RecordedCommand:
    return RecordedCommand(urn=urn, name=urn.rsplit("::", 1)[-1], delete="true", dir=None, interpreter=None,
                           environment={"PLAIN": "1"}, secret_environment=["API_KEY"], stdout="out", stderr=None,
                           dependencies=deps or [], created="2026-01-01T00:00:00+00:00")


def test_put_replace_drop(tmp_path: Path) -> None:
    path = record_path(tmp_path, "s")
    assert path == tmp_path / ".tierkit" / "s" / "rehearsal.json"
    store = RecordStore(path, "s")
    store.put(entry("u::a"))
    store.put(entry("u::b", ["u::a"]))
    store.put(entry("u::a"))  # a second up replaces, never duplicates
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o077 == 0
    data = json.loads(path.read_text())
    assert data["stack"] == "s" and "Not a Pulumi state" in data["about"]
    assert [c["name"] for c in data["commands"]] == ["b", "a"]
    reread = RecordStore(path, "s").record
    assert reread.commands[0].dependencies == ["u::a"]
    store.drop("u::a")
    store.drop("u::b")
    assert not path.exists(), "an empty record is removed"
    assert not list(path.parent.glob("*.tmp"))


def test_a_broken_record_is_one_error_line(tmp_path: Path) -> None:
    path = record_path(tmp_path, "s")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(TierkitError) as info:
        RecordStore(path, "s")
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{path}: not a rehearsal record (")
    assert info.value.problems[0].endswith("move it aside and run down by hand")
