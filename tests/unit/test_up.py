"""tierkit/commands/up.py: which engine `tierkit up` / `down` use (the `pulumi` CLI on PATH, or the
rehearsal); the commands as users run them are tests/cli/test_up_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierkit.commands.up import choose_engine
from tierkit.errors import TierkitError


def test_engine_choice_follows_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert choose_engine("auto") == ("rehearsal", None)
    with pytest.raises(TierkitError, match="pulumi is not on PATH"):
        choose_engine("pulumi")
    fake = tmp_path / "pulumi"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    assert choose_engine("auto") == ("pulumi", str(fake))
    assert choose_engine("rehearsal") == ("rehearsal", None)
