"""The lab's simulated GPU sets: generated topologies, replayed captures, injected faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierkit.catalog import GPUS
from tierkit.errors import TierkitError
from tierkit.lab.gpuset import GpuFault, check_topology, generate, gpu_set, parse_fault
from tierkit.lab.sim import SIM_DRIVER_VERSION

FIXTURES = Path(__file__).parent.parent / "fixtures" / "nvidia-smi"


def test_nvswitch_box_links_every_pair_and_splits_numa():
    layout = generate(GPUS["h100-sxm"], 8, "nvlink")
    for i in range(8):
        for j in range(8):
            assert layout.matrix[i][j] == ("X" if i == j else "NV18")
    assert layout.numa == ["0"] * 4 + ["1"] * 4
    assert layout.cpus[0] != layout.cpus[7]


def test_bridge_cards_pair_up_and_cross_sockets_over_pcie():
    layout = generate(GPUS["a100-80g-pcie"], 4, "nvlink")
    assert layout.matrix[0][1] == layout.matrix[2][3] == "NV12"
    assert layout.matrix[0][2] == layout.matrix[1][3] == "SYS"


def test_pcie_box_has_no_nvlink_and_node_within_a_socket():
    layout = generate(GPUS["l40s"], 2, "pcie")
    assert layout.matrix == [["X", "NODE"], ["NODE", "X"]]
    assert generate(GPUS["h100-sxm"], 4, "pcie").matrix[0][3] == "SYS"


def test_cards_without_nvlink_get_pcie_for_nvlink_and_refuse_pairs():
    assert "NV" not in str(generate(GPUS["rtx-pro-6000"], 2, "nvlink").matrix)
    with pytest.raises(TierkitError, match="pairs needs NVLink bridges"):
        generate(GPUS["rtx-5090"], 2, "pairs")


def test_gpu_set_describes_the_ordered_box():
    s = gpu_set("demo", "demo-1", "h100-sxm", 8, "nvlink", None, [])
    assert (s["gpu_key"], s["smi_name"], s["count"]) == ("h100-sxm", "NVIDIA H100 80GB HBM3", 8)
    assert s["driver_version"] == SIM_DRIVER_VERSION
    assert [g["index"] for g in s["gpus"]] == list(range(8))
    assert all(g["links"] == [26.562] * 18 and g["fabric_manager"] for g in s["gpus"])
    assert len({g["uuid"] for g in s["gpus"]}) == 8
    other = gpu_set("demo", "demo-2", "h100-sxm", 8, "nvlink", None, [])
    assert not {g["uuid"] for g in s["gpus"]} & {g["uuid"] for g in other["gpus"]}


def test_bridged_gpus_carry_their_bridge_links_and_pcie_ones_none():
    pairs = gpu_set("demo", "demo-1", "a100-80g-pcie", 4, "nvlink", None, [])
    assert all(len(g["links"]) == 12 for g in pairs["gpus"])
    pcie = gpu_set("demo", "demo-1", "h100-pcie", 2, "pcie", None, [])
    assert all(g["links"] == [] and g["nvlink_capable"] for g in pcie["gpus"])
    assert pcie["nccl"]["pcie_busbw_gbs"] < pairs["nccl"]["nvlink_busbw_gbs"]


def test_a_captured_topology_replays_with_its_nics():
    text = check_topology(str(FIXTURES / "l40s-4x-pcie-node-sys-mlx5-topo.txt"))
    s = gpu_set("demo", "demo-1", "l40s", 4, "file", text, [])
    assert s["devices"] == ["GPU0", "GPU1", "GPU2", "GPU3", "NIC0", "NIC1"]
    assert s["matrix"][0][1] == "NODE" and s["matrix"][0][2] == "SYS"
    assert [g["cpu_affinity"] for g in s["gpus"]][2] == "96-191,288-383"
    assert s["nics"][0] == {"label": "NIC0", "name": "mlx5_0"}


def test_a_captured_topology_must_match_the_gpu_count():
    text = check_topology(str(FIXTURES / "hgx-h100-8x-nv18-topo.txt"))
    with pytest.raises(TierkitError, match="shows 8 GPUs, --gpus-per-host is 4"):
        gpu_set("demo", "demo-1", "h100-sxm", 4, "file", text, [])


def test_unknown_topology_is_one_line():
    with pytest.raises(TierkitError, match="neither one of nvlink, pcie, pairs nor a file"):
        check_topology("/nonexistent/topo.txt")


@pytest.mark.parametrize("text, fault", [
    ("inactive-link=0:3", GpuFault(kind="inactive-link", gpu=0, link=3)),
    ("inactive-link=2", GpuFault(kind="inactive-link", gpu=2)),
    ("demo-2/missing-gpu=7", GpuFault(kind="missing-gpu", host="demo-2", gpu=7)),
    ("wrong-model=l40s", GpuFault(kind="wrong-model", model="l40s")),
])
def test_faults_parse_and_print_back(text, fault):
    assert parse_fault(text) == fault
    assert str(fault) == text


@pytest.mark.parametrize("text, message", [
    ("broken-gpu=1", "not a GPU fault"),
    ("missing-gpu=0:1", "not a GPU fault"),
    ("wrong-model=h100", "unknown GPU 'h100'"),
])
def test_bad_faults_are_refused(text, message):
    with pytest.raises(TierkitError, match=message):
        parse_fault(text)


def test_inactive_link_fault():
    s = gpu_set("demo", "demo-1", "h100-sxm", 8, "nvlink", None, [parse_fault("inactive-link=1:5")])
    assert s["gpus"][1]["links"][5] is None
    assert s["gpus"][1]["links"].count(None) == 1
    assert s["faults"] == ["inactive-link=1:5"]
    with pytest.raises(TierkitError, match="has links 0-17"):
        gpu_set("demo", "demo-1", "h100-sxm", 8, "nvlink", None, [parse_fault("inactive-link=1:18")])
    with pytest.raises(TierkitError, match="no NVLink in this topology"):
        gpu_set("demo", "demo-1", "l40s", 2, "pcie", None, [parse_fault("inactive-link=0")])


def test_missing_gpu_fault_renumbers_the_rest():
    healthy = gpu_set("demo", "demo-1", "a100-80g-pcie", 4, "nvlink", None, [])
    s = gpu_set("demo", "demo-1", "a100-80g-pcie", 4, "nvlink", None, [parse_fault("missing-gpu=1")])
    assert [g["index"] for g in s["gpus"]] == [0, 1, 2]
    assert [g["uuid"] for g in s["gpus"]] == [healthy["gpus"][i]["uuid"] for i in (0, 2, 3)]
    assert s["devices"] == ["GPU0", "GPU1", "GPU2"]
    assert s["matrix"] == [["X", "SYS", "SYS"], ["SYS", "X", "NV12"], ["SYS", "NV12", "X"]]
    assert s["count"] == 4


def test_wrong_model_fault_and_host_scoped_faults():
    faults = [parse_fault("demo-2/wrong-model=l40s")]
    right = gpu_set("demo", "demo-1", "h100-sxm", 2, "nvlink", None, faults)
    wrong = gpu_set("demo", "demo-2", "h100-sxm", 2, "nvlink", None, faults)
    assert right["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3" and right["faults"] == []
    assert wrong["gpus"][0]["name"] == "NVIDIA L40S" and wrong["smi_name"] == right["smi_name"]
    assert wrong["matrix"][0][1] == "NODE"


def test_gpu_count_bounds():
    with pytest.raises(TierkitError, match="use 1 to 8"):
        gpu_set("demo", "demo-1", "h100-sxm", 9, "nvlink", None, [])
