"""tierkit/collection.py lays the roles out as the collection tierkit.gpu: plugins move to
plugins/, every short name the move breaks becomes fully qualified; examples/baremetal names every
required variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tierkit import collection

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "baremetal"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return collection.lay_out(ROOT, tmp_path_factory.mktemp("c") / "tree", version="9.8.7")


def test_plugins_move_and_imports_follow(tree: Path) -> None:
    assert not list(tree.glob("roles/*/library")) and not list(tree.glob("roles/*/filter_plugins"))
    module = (tree / "plugins/modules/nvidia_topology.py").read_text()
    assert "from ansible_collections.tierkit.gpu.plugins.module_utils.tierkit_topology import" in module
    assert "ansible.module_utils.tierkit_topology" not in module
    assert (tree / "plugins/module_utils/tierkit_topology.py").is_file()
    assert (tree / "plugins/filter/nccl_perf.py").is_file()


def test_short_names_become_fully_qualified(tree: Path) -> None:
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
    for playbook in tree.glob("playbooks/*.yml"):
        for role in re.findall(r"\brole:\s*(\S+)", playbook.read_text()):
            assert role.startswith("tierkit.gpu.") and role.removeprefix("tierkit.gpu.") in roles, (playbook, role)
    tasks = (tree / "roles/gpu_topology/tasks/main.yml").read_text()
    assert "\n  tierkit.gpu.nvidia_topology:" in tasks
    gate = (tree / "roles/nccl/tasks/gate.yml").read_text()
    assert "| tierkit.gpu.nccl_perf" in gate and not re.search(r"\|\s*nccl_perf\b", gate)
    galaxy = yaml.safe_load((tree / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"], galaxy["version"]) == ("tierkit", "gpu", "9.8.7")


def test_renamer_leaves_task_names_and_other_filters_alone() -> None:
    renamer = collection.Renamer(["vllm"], ["nvidia_topology"], ["tierkit_topology"], ["nccl_perf"])
    text = "- name: Start vllm\n  ansible.builtin.debug:\n    msg: \"{{ x | nccl_perf_other | nccl_perf }}\"\n"
    assert renamer.yaml_text(text) == text.replace("| nccl_perf }}", "| tierkit.gpu.nccl_perf }}")
    assert renamer.yaml_text("    - role: vllm\n") == "    - role: tierkit.gpu.vllm\n"


def _required(role: str) -> set[str]:
    specs = yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text())["argument_specs"]
    return {name for entry in specs.values() for name, opt in entry.get("options", {}).items() if opt.get("required")}


def test_example_inventory_names_every_required_variable() -> None:
    gpu_vars = yaml.safe_load((EXAMPLE / "group_vars/gpu_servers.yml").read_text())
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta/argument_specs.yml").is_file())
    for role in roles:
        if role == "failover":
            text = (EXAMPLE / "group_vars/failover.yml").read_text()
            assert all(re.search(rf"^# {name}:.*REQUIRED", text, re.M) for name in _required(role)), role
        else:
            missing = _required(role) - set(gpu_vars)
            assert not missing, f"examples/baremetal/group_vars/gpu_servers.yml lacks {sorted(missing)} ({role})"
