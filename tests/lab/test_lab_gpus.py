"""Simulated nvidia-smi in real lab hosts answers the roles' queries as the spec says, for an 8x
NVSwitch host, a 4x bridged-pairs host and a 2x PCIe host; all_reduce_perf follows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tierkit.catalog import GPUS
from tierkit.lab import Lab
from tierkit.lab.sim import GPU_SET_PATH, SIM_DRIVER_VERSION
from tierkit.topology import QUERY_GPU_FIELDS, check_tier, parse, parse_query_gpu

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def pcie_lab(make_lab) -> Iterator[Lab]:
    """One host with two L40S cards on PCIe."""
    with make_lab("tktest-c", 1, "l40s", 2, topology="pcie") as made:
        yield made


def _run(lab: Lab, host: str, command: str) -> str:
    out = lab.ssh(host, [command], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _read(lab: Lab, host: str):
    """Everything the roles ask nvidia-smi, parsed as they parse it."""
    topo = parse(_run(lab, host, "nvidia-smi topo -m"))
    nvlink = parse(_run(lab, host, "nvidia-smi nvlink -s"))
    gpus = parse_query_gpu(_run(lab, host, f"nvidia-smi --query-gpu={QUERY_GPU_FIELDS} "
                                           "--format=csv,noheader,nounits"))
    listed = _run(lab, host, "nvidia-smi -L").splitlines()
    full = _run(lab, host, "nvidia-smi -q")
    return topo, nvlink, gpus, listed, full


def _consistent(topo, nvlink, gpus, listed, key: str, count: int) -> None:
    gpu = GPUS[key]
    assert topo.gpu_count == len(gpus) == len(listed) == len(nvlink.gpus) == count
    assert {g.name for g in gpus} == {gpu.smi_name}
    assert {g.memory_total_mib for g in gpus} == {gpu.vram_mib}
    assert {g.driver_version for g in gpus} == {SIM_DRIVER_VERSION}
    assert [f"GPU {g.index}: {g.name} (UUID: {g.uuid})" for g in gpus] == listed
    assert [g.uuid for g in gpus] == [g.uuid for g in nvlink.gpus]


def test_nvswitch_host(lab: Lab, parse_perf) -> None:
    host = lab.hosts[0].name
    topo, nvlink, gpus, listed, full = _read(lab, host)
    _consistent(topo, nvlink, gpus, listed, "h100-sxm", 8)
    assert all(topo.nvlinks(i, j) == 18 for i in range(8) for j in range(8) if i != j)
    assert all(len(g.links) == 18 and not g.inactive for g in nvlink.gpus)
    assert check_tier(topo, nvlink=nvlink, gpus=gpus, expected_count=8,
                      expected_names=GPUS["h100-sxm"].smi_names, tensor_parallel=8,
                      require_nvlink=True, min_links=18) == []
    assert full.count("    Fabric\n") == 8 and ": In Progress" in full
    # the fabric registers once nvidia-fabricmanager runs; then NCCL runs at NVSwitch speed
    _run(lab, host, "systemd-run --quiet --unit=nvidia-fabricmanager sleep infinity")
    try:
        assert _run(lab, host, "nvidia-smi -q").count(": Completed") == 8
        perf = parse_perf(_run(lab, host, "all_reduce_perf -b 8 -e 1G -f 2 -g 8"))
        assert perf["out_of_bounds"] == 0 and perf["gpus"] == 8
        assert perf["peak_busbw_gbs"] == pytest.approx(GPUS["h100-sxm"].nccl_busbw_gbs, rel=0.01)
    finally:
        _run(lab, host, "systemctl stop nvidia-fabricmanager")


def test_bridged_pairs_host(second_lab: Lab) -> None:
    host = second_lab.hosts[0].name
    topo, nvlink, gpus, listed, full = _read(second_lab, host)
    _consistent(topo, nvlink, gpus, listed, "a100-80g-pcie", 4)
    assert topo.nvlink == [[0, 1, 12], [2, 3, 12]]
    assert topo.path(0, 2) == "SYS"
    assert "    Fabric\n" not in full
    problems = check_tier(topo, nvlink=nvlink, gpus=gpus, tensor_parallel=4, require_nvlink=True)
    assert problems and all("need NVLink" in p for p in problems)
    assert check_tier(topo, nvlink=nvlink, gpus=gpus, tensor_parallel=2, require_nvlink=True) == []


def test_pcie_host(pcie_lab: Lab, parse_perf) -> None:
    host = pcie_lab.hosts[0].name
    topo, nvlink, gpus, listed, full = _read(pcie_lab, host)
    _consistent(topo, nvlink, gpus, listed, "l40s", 2)
    assert topo.path(0, 1) == "NODE" and topo.nvlink == []
    assert all(g.links == () for g in nvlink.gpus)
    assert "    Fabric\n" not in full
    perf = parse_perf(_run(pcie_lab, host, "all_reduce_perf -b 1G -e 1G -g 2"))
    assert perf["peak_busbw_gbs"] == pytest.approx(GPUS["l40s"].nccl_busbw_gbs, rel=0.01)
    gpu_set = json.loads(_run(pcie_lab, host, f"cat {GPU_SET_PATH}"))
    assert (gpu_set["gpu_key"], gpu_set["count"], gpu_set["topology"]) == ("l40s", 2, "pcie")


def test_gpu_faults_show_in_the_host(make_lab) -> None:
    faults = ["tktest-d-1/inactive-link=0:3", "tktest-d-1/missing-gpu=1",
              "tktest-d-2/wrong-model=l40s"]
    with make_lab("tktest-d", 2, "h100-sxm", 4, faults=faults) as lab:
        topo, nvlink, gpus, _, _ = _read(lab, "tktest-d-1")
        assert topo.gpu_count == 3 and nvlink.inactive == [[0, 3]]
        assert check_tier(topo, nvlink=nvlink, gpus=gpus, expected_count=4) == [
            "GPU count: found 3, expected 4"]
        _, _, wrong, _, _ = _read(lab, "tktest-d-2")
        assert {g.name for g in wrong} == {"NVIDIA L40S"}
        cli = subprocess.run([sys.executable, "-m", "tierkit", "lab", "status", "tktest-d", "--json"],
                             capture_output=True, text=True, check=True)
        assert [h["state"] for h in json.loads(cli.stdout)["hosts"]] == ["running"] * 2
