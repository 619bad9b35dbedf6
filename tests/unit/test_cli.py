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


def top_packages(importtime: str) -> set[str]:
    """The top-level packages named in `python -X importtime` output."""
    rows = [line.removeprefix("import time:").split("|") for line in importtime.splitlines()
            if line.startswith("import time:")]
    return {row[2].strip().split(".")[0] for row in rows if len(row) == 3 and row[0].strip().isdigit()}


def test_import_cli_loads_no_heavy_library() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tierkit.cli"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = top_packages(proc.stderr)
    assert "tierkit" in loaded and "typer" in loaded, "the probe saw the import"
    assert not loaded & set(HEAVY), f"`import tierkit.cli` loads {sorted(loaded & set(HEAVY))}; import them where the verb runs"


def test_the_reader_finds_nested_imports() -> None:
    sample = ("import time: self [us] | cumulative | imported package\n"
              "import time:       120 |        120 |     grpc._cython\n"
              "import time:       300 |       4000 |   pulumi.runtime\n")
    assert top_packages(sample) == {"grpc", "pulumi"}
