"""The gpu_topology role and its nvidia_topology module, run for real by Ansible on localhost.

A fake `nvidia-smi` (and `systemctl`) on PATH prints real-format captures; everything else is
the real thing: ansible-playbook, the role's argument specs, AnsiballZ shipping the parser from
the role's module_utils symlink, and the assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tierkit import topology
from tierkit.topology import parse_topo

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "nvidia-smi"
ROLE = ROOT / "roles" / "gpu_topology"
BIN = Path(sys.executable).parent
QUERY_ARGS = "--query-gpu=index,name,uuid,memory.total,driver_version,pci.bus_id --format=csv,noheader,nounits"


def capture(name: str, lines: int | None = None) -> str:
    """A fixture as nvidia-smi prints it: without its `# source:` line, optionally its first lines."""
    kept = [line for line in (FIXTURES / name).read_text().splitlines() if not line.startswith("# source:")]
    return "\n".join(kept[:lines]) + "\n"


def fake_host(tmp_path: Path, topo: str, query: str, nvlink: str = "", fabric_manager: str | None = None) -> Path:
    """A bin directory whose nvidia-smi answers exactly the module's three commands, logging each."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, content in (("topo.txt", topo), ("nvlink.txt", nvlink), ("query.csv", query)):
        (tmp_path / name).write_text(content)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"""#!/bin/sh
echo "$*" >> {tmp_path}/calls.log
case "$*" in
  "topo -m") exec cat {tmp_path}/topo.txt ;;
  "nvlink -s") exec cat {tmp_path}/nvlink.txt ;;
  "{QUERY_ARGS}") exec cat {tmp_path}/query.csv ;;
esac
echo "fake nvidia-smi: unexpected arguments: $*" >&2
exit 9
""")
    smi.chmod(0o755)
    if fabric_manager is not None:
        systemctl = bin_dir / "systemctl"
        code = 0 if fabric_manager == "active" else 3
        systemctl.write_text(f'#!/bin/sh\n[ "$*" = "is-active nvidia-fabricmanager" ] || exit 9\necho {fabric_manager}\nexit {code}\n')
        systemctl.chmod(0o755)
    return bin_dir


def ansible(tool: str, tmp_path: Path, bin_dir: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"[gpu_servers]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    env = {
        "PATH": f"{bin_dir}:{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        **env_extra,
    }
    return subprocess.run([str(BIN / tool), "-i", str(inventory), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def playbook(tmp_path: Path, bin_dir: Path, extra_vars: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return ansible("ansible-playbook", tmp_path, bin_dir, "playbooks/topology.yml",
                   "-e", json.dumps(extra_vars), *args)


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls.log").read_text().splitlines()


def test_module_utils_is_the_tierkit_parser():
    link = ROLE / "module_utils" / "tierkit_topology.py"
    assert link.is_symlink()
    assert not os.path.isabs(os.readlink(link))
    assert link.resolve() == Path(topology.__file__).resolve()


def test_module_returns_the_parsers_reading(tmp_path):
    topo = capture("h100-4x-nv6-4nic-topo.txt")
    nvlink = capture("h100-4x-nvlink-status-one-inactive.txt")
    bin_dir = fake_host(tmp_path, topo, capture("h100-8x-query-gpu.csv", lines=4), nvlink)
    result = ansible("ansible", tmp_path, bin_dir, "gpu_servers", "-m", "nvidia_topology",
                     "-a", "tensor_parallel=4 require_nvlink=true",
                     ANSIBLE_LIBRARY=str(ROLE / "library"), ANSIBLE_MODULE_UTILS=str(ROLE / "module_utils"))
    assert result.returncode == 0, result.stdout + result.stderr
    reading = json.loads(result.stdout[result.stdout.index("{"):])
    assert reading["changed"] is False
    assert reading["topology"] == parse_topo(topo).to_json()
    assert reading["nvlink_status"]["inactive"] == [[2, 3]]
    assert [g["name"] for g in reading["gpus"]] == ["NVIDIA H100 80GB HBM3"] * 4
    assert reading["problems"] == ["GPU2 link 3: inactive"]


def test_hgx_h100_passes_in_check_mode(tmp_path):
    bin_dir = fake_host(tmp_path, capture("hgx-h100-8x-nv18-topo.txt"), capture("h100-8x-query-gpu.csv"),
                        capture("h100-8x-nvlink-status.txt"), fabric_manager="active")
    result = playbook(tmp_path, bin_dir, {
        "gpu_topology_expected_count": 8, "gpu_topology_expected_names": ["NVIDIA H100 80GB HBM3"],
        "gpu_topology_tensor_parallel": 8, "gpu_topology_require_nvlink": True,
        "gpu_topology_min_nvlinks": 18, "gpu_topology_fabric_manager": True}, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 GPU(s), 28 NVLinked pair(s): matches the tier (tensor_parallel=8)" in result.stdout
    assert "ok=5    changed=0" in result.stdout
    assert calls(tmp_path) == ["topo -m", "nvlink -s", QUERY_ARGS]


def test_pcie_host_fails_naming_a_pair(tmp_path):
    bin_dir = fake_host(tmp_path, capture("l40s-4x-pcie-node-sys-mlx5-topo.txt"), capture("rtx3090-4x-query-gpu.csv"))
    result = playbook(tmp_path, bin_dir, {
        "gpu_topology_expected_count": 4, "gpu_topology_tensor_parallel": 4,
        "gpu_topology_require_nvlink": True, "gpu_topology_min_nvlinks": 18})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "GPU topology does not match the tier (6 problem(s)): GPU0-GPU1: NODE, need NVLink for tensor_parallel=4;" in result.stdout
    assert "GPU1-GPU3: SYS, need NVLink for tensor_parallel=4" in result.stdout
    assert calls(tmp_path) == ["topo -m", QUERY_ARGS]  # no NV pair: nvlink -s is not run


def test_inactive_link_fails_naming_the_link(tmp_path):
    bin_dir = fake_host(tmp_path, capture("h100-4x-nv6-4nic-topo.txt"), capture("h100-8x-query-gpu.csv", lines=4),
                        capture("h100-4x-nvlink-status-one-inactive.txt"))
    result = playbook(tmp_path, bin_dir, {"gpu_topology_tensor_parallel": 4, "gpu_topology_require_nvlink": True})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "(1 problem(s)): GPU2 link 3: inactive" in result.stdout


def test_fabric_manager_must_be_active_on_nvswitch(tmp_path):
    bin_dir = fake_host(tmp_path, capture("hgx-h100-8x-nv18-topo.txt"), capture("h100-8x-query-gpu.csv"),
                        capture("h100-8x-nvlink-status.txt"), fabric_manager="inactive")
    result = playbook(tmp_path, bin_dir, {"gpu_topology_expected_count": 8, "gpu_topology_fabric_manager": True})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nvidia-fabricmanager is inactive: NVSwitch systems need it running" in result.stdout


def test_unreadable_nvidia_smi_output_fails_the_task(tmp_path):
    bin_dir = fake_host(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
                        capture("h100-8x-query-gpu.csv"))
    result = playbook(tmp_path, bin_dir, {})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot read the output of nvidia-smi topo -m: no topo -m header" in result.stdout
