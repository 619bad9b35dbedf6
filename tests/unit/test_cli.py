"""tierkit/cli.py: the command starts light. Mounting every verb (what `--version`, `--help`,
`validate` and `plan` pay for) imports none of the heavy libraries; verbs import those when
they run (bench/cli_start.py times the four commands)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("pulumi", "grpc", "paramiko", "ansible", "ansible_runner")
ROOT = Path(__file__).resolve().parents[2]


def imported_packages(statement: str) -> set[str]:
    """The top-level packages `python -X importtime -c STATEMENT` reports, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip().split(".")[0]
            for line in proc.stderr.splitlines() if line.startswith("import time:") and "|" in line}


def test_import_cli_loads_no_heavy_library() -> None:
    loaded = imported_packages("import tierkit.cli")
    assert "tierkit" in loaded and "typer" in loaded, "the probe saw the import"
    assert not loaded & set(HEAVY), f"`import tierkit.cli` loads {sorted(loaded & set(HEAVY))}; import them where the verb runs"


def test_the_probe_sees_a_heavy_import() -> None:
    assert "paramiko" in imported_packages("import tierkit.ssh_wait")
