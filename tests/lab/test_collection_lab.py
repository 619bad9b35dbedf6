"""The installed collection on a lab host, as a bare-metal team runs it: an inventory written by
hand (no tierkit inventory renderer), `ansible-playbook tierkit.gpu.topology` from the collection
installed into a private path. The topology gate (the collection's own module and module_utils)
passes the bridged pairs for tensor_parallel 2 and names the PCIe pair for tensor_parallel 4."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tierkit import catalog, netns
from tierkit.inventory import host_vars
from tierkit.lab import Lab

pytestmark = pytest.mark.lab

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([str(BIN / "tierkit"), "collection", "build", "--output", str(out)], check=True,
                   capture_output=True, timeout=300)
    path = tmp_path_factory.mktemp("collections")
    (tarball,) = out.glob("*.tar.gz")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(path)],
                   check=True, capture_output=True, timeout=300)
    return path


def topology_run(lab: Lab, collections: Path, tmp_path: Path, tensor_parallel: int) -> subprocess.CompletedProcess[str]:
    host = lab.hosts[0]
    gpu = catalog.GPUS["a100-80g-pcie"]
    inventory = {"all": {"children": {"gpu_servers": {"hosts": {host.name: host_vars(host)}}, "failover": {"hosts": {}}}}}
    group_vars = {
        "gpu_topology_expected_count": 4,
        "gpu_topology_expected_name": gpu.smi_name,
        "gpu_topology_tensor_parallel": tensor_parallel,
        "gpu_topology_require_nvlink": True,
    }
    (tmp_path / "group_vars").mkdir(parents=True)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "group_vars" / "gpu_servers.yml").write_text(yaml.safe_dump(group_vars))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_ROLES_PATH": "/nonexistent",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CONFIG": "/nonexistent"}
    argv = [str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), "tierkit.gpu.topology"]
    return subprocess.run(netns.wrap(argv, host.netns), capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)


def test_topology_gate_from_the_installed_collection(second_lab: Lab, collections: Path, tmp_path: Path) -> None:
    done = topology_run(second_lab, collections, tmp_path / "tp2", 2)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed=0" in done.stdout

    refused = topology_run(second_lab, collections, tmp_path / "tp4", 4)
    assert refused.returncode != 0
    assert "need NVLink for tensor_parallel=4" in refused.stdout
