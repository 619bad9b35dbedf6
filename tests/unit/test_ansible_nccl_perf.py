"""The all_reduce_perf parser the nccl role's gate uses (roles/nccl/filter_plugins/nccl_perf.py),
on real-format output (tests/fixtures/nccl, each with its source line) and on the lab's simulator."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from tierkit.catalog import GPUS
from tierkit.inventory import nccl_busbw_floor_gbs
from tierkit.lab.gpuset import gpu_set

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "nccl"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nccl_perf = _load("nccl_perf", ROOT / "roles" / "nccl" / "filter_plugins" / "nccl_perf.py")
sim = _load("sim_all_reduce_perf", ROOT / "tierkit" / "lab" / "sim" / "all_reduce_perf.py")


def test_passing_8x_h100_run():
    r = nccl_perf.parse_perf((FIXTURES / "all_reduce_perf-8x-h100-sxm-pass.txt").read_text())
    assert r["out_of_bounds"] == 0
    assert r["avg_busbw_gbs"] == pytest.approx(103.821)
    assert r["gpus"] == 8 and r["devices"] == ["NVIDIA H100 80GB HBM3"] * 8
    assert len(r["rows"]) == 28 and r["rows"][0]["bytes"] == 8 and r["rows"][-1]["bytes"] == 1 << 30
    assert r["peak_busbw_gbs"] == pytest.approx(385.88)


def test_failing_run_reports_wrong_values():
    r = nccl_perf.parse_perf((FIXTURES / "all_reduce_perf-2x-pcie-phb-fail.txt").read_text())
    assert r["out_of_bounds"] == 70
    assert r["gpus"] == 2
    assert [row["bytes"] for row in r["rows"] if row["wrong"]][0] == 1 << 24


def test_crashed_run_is_refused_with_its_error():
    with pytest.raises(nccl_perf.NcclOutputError, match="did not complete.*Test NCCL failure common.cu:1009"):
        nccl_perf.parse_perf((FIXTURES / "all_reduce_perf-crashed.txt").read_text())


def test_older_format_and_mpirun_prefixes():
    old = " Out of bounds values : 0 OK\n Avg bus bandwidth    : 12.5 \n"
    assert nccl_perf.parse_perf(old)["avg_busbw_gbs"] == 12.5
    mpi = "[1,0]<stdout>:# Out of bounds values : 3 FAILED\n[1,0]<stdout>:# Avg bus bandwidth    : 52.9753\n"
    r = nccl_perf.parse_perf(mpi)
    assert (r["out_of_bounds"], r["avg_busbw_gbs"], r["gpus"]) == (3, 52.9753, None)


@pytest.mark.parametrize("text", ["", "# Avg bus bandwidth    : 10\n", "# Out of bounds values : 0 OK\n",
                                  "# Out of bounds values : 0 OK\n# Avg bus bandwidth    : n/a\n"])
def test_incomplete_output_never_reads_as_zero(text):
    with pytest.raises(nccl_perf.NcclOutputError):
        nccl_perf.parse_perf(text)


def test_filter_raises_an_ansible_error():
    assert nccl_perf.FilterModule().filters()["nccl_perf"] is nccl_perf.nccl_perf
    with pytest.raises(AnsibleFilterError, match="all_reduce_perf output"):
        nccl_perf.nccl_perf("segfault\n")


def _simulate(tmp_path: Path, monkeypatch, gpu: str, count: int, topology: str) -> dict:
    path = tmp_path / "tierkit-lab.json"
    path.write_text(json.dumps(gpu_set("t", "h1", gpu, count, topology, None, [])))
    monkeypatch.setattr(sim, "GPU_SET_FILE", str(path))
    monkeypatch.setattr(sim, "fabric_manager_running", lambda unit: True)
    out = io.StringIO()
    sim.run(["-b", "8", "-e", "1G", "-f", "2", "-g", str(count)], out)
    return nccl_perf.parse_perf(out.getvalue())


def test_floor_passes_nvlink_and_fails_pcie_on_the_lab_simulator(tmp_path, monkeypatch):
    floor = nccl_busbw_floor_gbs(GPUS["h100-sxm"], 4)
    nvlink = _simulate(tmp_path, monkeypatch, "h100-sxm", 4, "nvlink")
    pcie = _simulate(tmp_path, monkeypatch, "h100-sxm", 4, "pcie")
    assert nvlink["out_of_bounds"] == 0 and nvlink["gpus"] == 4
    assert nvlink["peak_busbw_gbs"] >= floor > pcie["peak_busbw_gbs"]
