"""The collection as a bare-metal team gets it: `tierkit collection build` makes the tarball,
`ansible-galaxy collection install` installs it into a private path, the example playbook passes
`ansible-playbook --syntax-check` against it, and `ansible-inventory` reads the example inventory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLE = ROOT / "examples" / "baremetal"


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "ANSIBLE_NOCOLOR": "1", **(env or {})})
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([str(BIN / "tierkit"), "collection", "build", "--output", str(out)])
    (tarball,) = out.glob("tierkit-gpu-*.tar.gz")
    path = tmp_path_factory.mktemp("collections")
    run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(path)])
    return path


def test_installs_with_every_role(installed: Path) -> None:
    roles = {p.name for p in (installed / "ansible_collections/tierkit/gpu/roles").iterdir()}
    assert roles == {p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir()}


def test_example_playbook_passes_syntax_check(installed: Path) -> None:
    env = {"ANSIBLE_COLLECTIONS_PATH": str(installed), "ANSIBLE_ROLES_PATH": "/nonexistent"}
    done = run([str(BIN / "ansible-playbook"), "-i", str(EXAMPLE / "hosts.yml"), "--syntax-check",
                str(EXAMPLE / "site.yml")], env)
    assert "ERROR" not in done.stderr


def test_example_inventory_reads() -> None:
    done = run([str(BIN / "ansible-inventory"), "-i", str(EXAMPLE / "hosts.yml"), "--list"])
    inventory = json.loads(done.stdout)
    assert inventory["gpu_servers"]["hosts"] == ["gpu-a"]
    assert inventory["_meta"]["hostvars"]["gpu-a"]["vllm_model"] == "Qwen/Qwen2.5-7B-Instruct"
