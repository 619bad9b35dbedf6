"""The simulated nvidia-smi and all_reduce_perf, run as lab hosts run them (stdlib python3, the
GPU set from a file), read back with the parsers the roles use."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tierkit.catalog import GPUS
from tierkit.lab.gpuset import PCIE_BUSBW_GBS, SYS_FACTOR, gpu_set, parse_fault
from tierkit.lab.sim import SIM_DRIVER_VERSION, SIMULATORS
from tierkit.lab.sim.all_reduce_perf import ring_busbw
from tierkit.topology import QUERY_GPU_FIELDS, parse, parse_query_gpu

ROOT = Path(__file__).resolve().parents[2]
SIM = {installed.rsplit("/", 1)[1]: source for source, installed in SIMULATORS.items()}
# The hosts' interpreter: standard library only, isolated from any venv.
PYTHON = [shutil.which("python3") or sys.executable, "-I", "-S"]


def _perf_parser():
    spec = importlib.util.spec_from_file_location(
        "nccl_perf", ROOT / "roles/nccl/filter_plugins/nccl_perf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parse_perf


@pytest.fixture
def host(tmp_path, monkeypatch):
    """Write a GPU set; run a simulator against it: (tool, *args) -> CompletedProcess."""
    path = tmp_path / "tierkit-lab.json"
    monkeypatch.setenv("TIERKIT_LAB_GPU_SET", str(path))
    monkeypatch.setenv("TIERKIT_LAB_PERSISTENCE", str(tmp_path / "persistence"))

    def make(gpu, count, topology="nvlink", faults=()):
        s = gpu_set("t", "t-1", gpu, count, topology, None, [parse_fault(f) for f in faults])
        path.write_text(json.dumps(s))

        def run(tool, *args):
            return subprocess.run([*PYTHON, str(SIM[tool]), *args], capture_output=True,
                                  text=True, check=False)
        run.gpu_set = s
        return run
    return make


@pytest.mark.parametrize("gpu, count, topology", [
    ("h100-sxm", 8, "nvlink"), ("a100-80g-pcie", 4, "nvlink"), ("l40s", 2, "pcie"),
])
def test_topo_matrix_reads_back_as_generated(host, gpu, count, topology):
    run = host(gpu, count, topology)
    out = run("nvidia-smi", "topo", "-m")
    assert out.returncode == 0
    topo = parse(out.stdout)
    assert [list(row) for row in topo.cells] == run.gpu_set["matrix"]
    assert topo.columns == ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")
    assert [g.numa_affinity for g in topo.gpus] == [(int(g["numa_node"]),)
                                                     for g in run.gpu_set["gpus"]]
    assert "\t X \t" in out.stdout and "Legend:" in out.stdout


def test_query_gpu_answers_the_roles_query(host):
    run = host("h100-sxm", 8)
    out = run("nvidia-smi", f"--query-gpu={QUERY_GPU_FIELDS}", "--format=csv,noheader,nounits")
    gpus = parse_query_gpu(out.stdout)
    assert [g.index for g in gpus] == list(range(8))
    assert {g.name for g in gpus} == {GPUS["h100-sxm"].smi_name}
    assert {g.memory_total_mib for g in gpus} == {GPUS["h100-sxm"].vram_mib}
    assert {g.driver_version for g in gpus} == {SIM_DRIVER_VERSION}
    assert gpus[0].pci_bus_id == "00000000:18:00.0"
    with_header = run("nvidia-smi", "--query-gpu=index,memory.total", "--format=csv").stdout
    assert with_header.splitlines()[:2] == ["index, memory.total [MiB]", "0, 81559 MiB"]


def test_query_gpu_refuses_unknown_fields_and_missing_format(host):
    run = host("l40s", 1)
    bad = run("nvidia-smi", "--query-gpu=index,bogus", "--format=csv")
    assert bad.returncode == 2 and 'Field "bogus" is not a valid field' in bad.stdout
    assert run("nvidia-smi", "--query-gpu=index").returncode == 2


def test_list_gpus_and_missing_gpus(host):
    run = host("a100-80g-pcie", 4, faults=["missing-gpu=3"])
    lines = run("nvidia-smi", "-L").stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("GPU 0: NVIDIA A100 80GB PCIe (UUID: GPU-")
    none = host("l40s", 1, faults=["missing-gpu=0"])("nvidia-smi", "-L")
    assert none.returncode == 6 and "No devices were found" in none.stdout


def test_nvlink_status_shows_inactive_links(host):
    run = host("h100-sxm", 8, faults=["inactive-link=2:7", "inactive-link=5"])
    status = parse(run("nvidia-smi", "nvlink", "-s").stdout)
    assert status.inactive[0] == [2, 7]
    assert status.gpu(5).all_inactive
    assert len(status.gpu(0).links) == 18 and status.gpu(0).links[0].gbps == 26.562


def test_nvlink_status_without_nvlink(host):
    bridged_without_bridge = parse(host("h100-pcie", 2, "pcie")("nvidia-smi", "nvlink", "-s").stdout)
    assert all(g.all_inactive for g in bridged_without_bridge.gpus)
    pcie_only = parse(host("l40s", 2, "pcie")("nvidia-smi", "nvlink", "-s").stdout)
    assert all(g.links == () and not g.all_inactive for g in pcie_only.gpus)


def test_query_all_has_fabric_only_on_nvswitch_and_waits_for_fabric_manager(host):
    nvswitch = host("h100-sxm", 8)("nvidia-smi", "-q").stdout
    assert nvswitch.count("    Fabric\n") == 8
    # no nvidia-fabricmanager runs here, as on a board before the role starts it
    assert "        State                             : In Progress" in nvswitch
    assert "Attached GPUs                             : 8" in nvswitch
    assert "    Fabric\n" not in host("l40s", 2, "pcie")("nvidia-smi", "-q").stdout


def test_persistence_mode_lasts_until_changed(host):
    run = host("l40s", 2, "pcie")
    query = ("nvidia-smi", "--query-gpu=persistence_mode", "--format=csv,noheader")
    assert run(*query).stdout.split() == ["Disabled", "Disabled"]
    assert run("nvidia-smi", "-pm", "1").stdout.endswith("All done.\n")
    assert run(*query).stdout.split() == ["Enabled", "Enabled"]


def test_all_reduce_perf_output_reads_with_the_nccl_role_parser(host):
    run = host("a100-80g-pcie", 4)
    out = run("all_reduce_perf", "-b", "8", "-e", "1G", "-f", "2", "-g", "2")
    assert out.returncode == 0
    result = _perf_parser()(out.stdout)
    assert result["out_of_bounds"] == 0 and result["gpus"] == 2
    assert len(result["rows"]) == 28  # 8 B to 1 GiB, doubling
    # the bridged pair: close to the catalog's NVLink figure at 1 GiB
    assert result["peak_busbw_gbs"] == pytest.approx(GPUS["a100-80g-pcie"].nccl_busbw_gbs, rel=0.01)
    assert 0 < result["avg_busbw_gbs"] < result["peak_busbw_gbs"]
    sizes = [r["bytes"] for r in result["rows"]]
    assert sizes[0] == 8 and sizes[-1] == 1 << 30


def test_all_reduce_perf_over_pcie_is_much_slower(host):
    parse_perf = _perf_parser()
    args = ("-b", "1G", "-e", "1G", "-g", "4")
    pairs = parse_perf(host("a100-80g-pcie", 4)("all_reduce_perf", *args).stdout)
    # four bridged GPUs: the ring crosses sockets over PCIe twice
    assert pairs["peak_busbw_gbs"] == pytest.approx(PCIE_BUSBW_GBS * SYS_FACTOR, rel=0.01)
    l40s = parse_perf(host("l40s", 2, "pcie")("all_reduce_perf", "-b", "1G", "-e", "1G", "-g", "2").stdout)
    assert l40s["peak_busbw_gbs"] == pytest.approx(GPUS["l40s"].nccl_busbw_gbs, rel=0.01)


def test_all_reduce_perf_errors(host):
    run = host("l40s", 2, "pcie")
    too_many = run("all_reduce_perf", "-g", "4")
    assert too_many.returncode == 1 and "invalid device ordinal" in too_many.stdout
    # NVSwitch GPUs without nvidia-fabricmanager: CUDA error 802
    no_fabric = host("h100-sxm", 8)("all_reduce_perf", "-g", "8")
    assert no_fabric.returncode == 1 and "system not yet initialized" in no_fabric.stdout


def test_ring_model_on_nvswitch_and_with_an_inactive_link():
    s = gpu_set("t", "t-1", "h100-sxm", 8, "nvlink", None, [])
    assert ring_busbw(s, 8) == pytest.approx(GPUS["h100-sxm"].nccl_busbw_gbs)
    assert ring_busbw(s, 1) == 0.0
    broken = gpu_set("t", "t-1", "h100-sxm", 8, "nvlink", None, [parse_fault("inactive-link=0:3")])
    assert ring_busbw(broken, 8) == pytest.approx(GPUS["h100-sxm"].nccl_busbw_gbs * 17 / 18)


def test_persistenced_turns_persistence_on_while_it_runs(host, tmp_path, monkeypatch):
    run = host("h100-sxm", 2)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\nexec {' '.join(PYTHON)} {SIM['nvidia-smi']} \"$@\"\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    query = ("nvidia-smi", "--query-gpu=persistence_mode", "--format=csv,noheader")
    daemon = subprocess.Popen([*PYTHON, str(SIM["nvidia-persistenced"]), "--user", "root", "--persistence-mode"])
    try:
        deadline = time.monotonic() + 20
        while run(*query).stdout.split() != ["Enabled"] * 2:
            assert time.monotonic() < deadline and daemon.poll() is None, "persistence never came on"
            time.sleep(0.1)
    finally:
        daemon.terminate()
        daemon.wait(10)
    assert run(*query).stdout.split() == ["Disabled"] * 2
