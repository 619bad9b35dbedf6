"""The nvidia-smi topology parser and the tier check, on real-format captures and broken input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tierkit.topology import (
    NvlinkStatus,
    TopologyParseError,
    TopoMatrix,
    check_tier,
    parse,
    parse_nvlink,
    parse_query_gpu,
    parse_topo,
    tp_groups,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvidia-smi"
TOPO_FIXTURES = sorted(p.name for p in FIXTURES.glob("*-topo.txt"))
NVLINK_FIXTURES = sorted(p.name for p in FIXTURES.glob("*nvlink-status*.txt"))


def text(name: str) -> str:
    """A fixture as captured, its `# source:` line included (the parser skips text before the output)."""
    return (FIXTURES / name).read_text()


def query(name: str) -> str:
    """A --query-gpu fixture without its `# source:` line (nvidia-smi prints only the CSV)."""
    return "".join(line for line in text(name).splitlines(keepends=True) if not line.startswith("# source:"))


def test_every_fixture_names_its_source():
    for path in FIXTURES.iterdir():
        assert path.read_text().startswith("# source: "), path.name


# --- topo -m on the real captures ---------------------------------------------------------------


def test_hgx_h100_nv18_all_pairs():
    topo = parse_topo(text("hgx-h100-8x-nv18-topo.txt"))
    assert topo.gpu_count == 8
    assert topo.nvlink == [[i, j, 18] for i in range(8) for j in range(i + 1, 8)]
    assert topo.columns == ("CPU Affinity", "NUMA Affinity")
    assert topo.gpus[0].cpu_affinity == ((0, 51), (104, 155))
    assert topo.gpus[4].cpu_affinity == ((52, 103), (156, 207))
    assert [g.numa_affinity for g in topo.gpus] == [(0,)] * 4 + [(1,)] * 4
    assert all(g.gpu_numa_id is None for g in topo.gpus)
    assert topo.nics == ()


def test_l40s_pcie_with_nic_rows_and_nic_legend():
    topo = parse_topo(text("l40s-4x-pcie-node-sys-mlx5-topo.txt"))
    assert topo.gpu_count == 4
    assert topo.nvlink == []
    assert topo.devices == ("GPU0", "GPU1", "GPU2", "GPU3", "NIC0", "NIC1")
    assert [(n.label, n.name) for n in topo.nics] == [("NIC0", "mlx5_0"), ("NIC1", "mlx5_1")]
    assert (topo.path(0, 1), topo.path(0, 2), topo.path(2, 3)) == ("NODE", "SYS", "NODE")
    assert topo.cells[4][5] == "PIX" and topo.cells[0][4] == "SYS"
    assert topo.columns == ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")
    assert topo.gpus[2].cpu_affinity == ((96, 191), (288, 383))
    assert topo.gpus[2].numa_affinity == (1,)


def test_rtx3090_two_bridged_pairs_leave_the_rest_on_pcie():
    topo = parse_topo(text("rtx3090-4x-two-nvlink-pairs-topo.txt"))
    assert topo.nvlink == [[0, 2, 4], [1, 3, 4]]
    assert (topo.path(0, 1), topo.path(0, 3), topo.path(2, 3)) == ("PHB", "NODE", "PHB")
    assert topo.nvlinks(0, 1) == 0 and topo.nvlinks(2, 0) == 4


def test_single_gpu_with_two_unnamed_nics_and_an_empty_cell():
    topo = parse_topo(text("rtx5090-single-gpu-2nic-topo.txt"))
    assert topo.gpu_count == 1
    assert topo.nvlink == []
    assert [(n.label, n.name) for n in topo.nics] == [("NIC0", None), ("NIC1", None)]
    gpu = topo.gpus[0]
    assert (gpu.cpu_affinity, gpu.numa_affinity, gpu.gpu_numa_id) == (((32, 63), (96, 127)), (1,), None)


def test_tab_separated_capture():
    topo = parse_topo(text("rtx5090-2x-tabs-topo.txt"))
    assert topo.gpu_count == 2 and topo.path(0, 1) == "PHB" and topo.nvlink == []
    assert topo.gpus[1].cpu_affinity == ((0, 63),) and topo.gpus[1].numa_affinity == (0,)


def test_comma_list_affinity_and_nic_rows():
    topo = parse_topo(text("h100-4x-nv6-4nic-topo.txt"))
    assert topo.nvlink == [[i, j, 6] for i in range(4) for j in range(i + 1, 4)]
    assert topo.gpus[0].cpu_affinity == ((6, 6), (14, 14), (22, 22), (30, 30))
    assert [g.numa_affinity for g in topo.gpus] == [(3,), (1,), (7,), (5,)]
    assert [n.label for n in topo.nics] == ["NIC0", "NIC1", "NIC2", "NIC3"]
    assert topo.cells[7][3] == "PIX"


def test_older_driver_names_nics_by_device_in_the_header():
    topo = parse_topo(text("older-driver-mlx5-headers-topo.txt"))
    assert [(n.label, n.name) for n in topo.nics] == [("mlx5_0", "mlx5_0"), ("mlx5_1", "mlx5_1")]
    assert topo.columns == ("CPU Affinity",)
    assert topo.gpus[3].cpu_affinity == ((10, 19), (30, 39))
    assert topo.gpus[3].numa_affinity is None
    assert topo.nvlink == [[0, 1, 2], [2, 3, 2]]


def test_gpu_numa_id_column_with_numbers():
    numbered = text("l40s-4x-pcie-node-sys-mlx5-topo.txt")
    for gpu, node in enumerate((2, 2, 3, 3)):
        numbered = re.sub(rf"^(GPU{gpu} .*)N/A$", rf"\g<1>{node}", numbered, flags=re.M)
    assert [g.gpu_numa_id for g in parse_topo(numbered).gpus] == [2, 2, 3, 3]


def _retabbed(capture: str) -> str:
    """The capture with every run of 2+ blanks (or tabs) turned into one tab."""
    return "\n".join(re.sub(r"[ \t]{2,}|\t", "\t", line) for line in capture.splitlines())


@pytest.mark.parametrize("name", TOPO_FIXTURES)
def test_tabs_and_spaces_read_the_same(name):
    capture = text(name)
    reading = parse_topo(capture).to_json()
    assert parse_topo(capture.expandtabs(8)).to_json() == reading
    assert parse_topo(_retabbed(capture)).to_json() == reading


@pytest.mark.parametrize("name", TOPO_FIXTURES + NVLINK_FIXTURES)
def test_parse_tells_the_formats_apart(name):
    reading = parse(text(name))
    assert isinstance(reading, TopoMatrix if name.endswith("-topo.txt") else NvlinkStatus)
    assert reading.to_json()["kind"] == ("topo" if name.endswith("-topo.txt") else "nvlink")


def test_topo_json_shape():
    data = parse_topo(text("rtx3090-4x-two-nvlink-pairs-topo.txt")).to_json()
    assert data["kind"] == "topo" and data["gpu_count"] == 4
    assert data["nvlink"] == [[0, 2, 4], [1, 3, 4]]
    assert data["matrix"][0] == ["X", "PHB", "NV4", "NODE"]
    assert data["gpus"][0] == {"index": 0, "cpu_affinity": [[0, 23]], "numa_affinity": [0], "gpu_numa_id": None}


# --- nvlink -s ----------------------------------------------------------------------------------


def test_h100_nvlink_status_all_active():
    status = parse_nvlink(text("h100-nvlink-status-gpu0-gpu1.txt"))
    assert [g.index for g in status.gpus] == [0, 1]
    assert status.gpus[1].uuid == "GPU-dd3b269a-8f3a-d2d5-1518-2713ba03fcf7"
    assert status.gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert all(len(g.links) == 18 and all(link.gbps == 26.562 for link in g.links) for g in status.gpus)
    assert status.inactive == []
    assert status.to_json()["gpus"][0]["links"][0] == {"link": 0, "gbps": 26.562, "active": True}


def test_v100_inactive_links_after_an_elided_preamble():
    status = parse_nvlink(text("v100-nvlink-status-inactive-links.txt"))
    assert [g.index for g in status.gpus] == [3]
    assert status.inactive == [[3, 3], [3, 5]]
    assert status.gpus[0].links[3].gbps is None and not status.gpus[0].links[3].active
    assert status.gpus[0].links[4].gbps == 25.781


def test_nvml_all_links_inactive_message():
    status = parse_nvlink(text("a100-pcie-nvlink-status-all-inactive.txt"))
    assert [(g.index, g.all_inactive, g.links) for g in status.gpus] == [(0, True, ()), (1, True, ())]


# --- --query-gpu ---------------------------------------------------------------------------------


def test_query_gpu_csv():
    gpus = parse_query_gpu(query("rtx3090-4x-query-gpu.csv"))
    assert [g.index for g in gpus] == [0, 1, 2, 3]
    assert gpus[2].name == "NVIDIA GeForce RTX 3090"
    assert (gpus[2].memory_total_mib, gpus[2].driver_version, gpus[2].pci_bus_id) == (24576, "595.58.03", "00000000:41:00.0")


# --- input that must be refused -------------------------------------------------------------------

HGX = text("hgx-h100-8x-nv18-topo.txt")
L40S = text("l40s-4x-pcie-node-sys-mlx5-topo.txt")


@pytest.mark.parametrize(("broken", "message"), [
    ("hello world\nthis is not nvidia-smi\n", "neither nvidia-smi topo -m"),
    ("", "neither nvidia-smi topo -m"),
    ("\n".join(HGX.splitlines()[:6]), "expected the GPU4 row, found the end of the matrix"),
    (HGX.replace("GPU3    NV18    NV18    NV18     X", "GPU3    NV18    PHB     NV18     X"), "must be symmetric"),
    (HGX.replace("GPU2    NV18    NV18     X      NV18", "GPU2    NV18    NV18     X      QQQ"), "not a path code"),
    (HGX.replace("GPU1    NV18     X ", "GPU1     X      X "), "X must be exactly on the diagonal"),
    (HGX.replace("0-51,104-155    0\nGPU1", "0-51,1x4-155    0\nGPU1"), "is not a CPU list"),
    (HGX.replace("0-51,104-155    0\nGPU1", "51-0,104-155    0\nGPU1"), "runs backwards"),
    (HGX.replace("52-103,156-207  1\nGPU6", "52-103,156-207\nGPU6"), "1 cells after the matrix, but the header has 2"),
    (L40S.replace("GPU NUMA ID", "GPU NUMA ID     Power Domain"), "unknown column 'Power Domain'"),
    (L40S.replace("NIC1    SYS     SYS     NODE    NODE    PIX      X", "NIC1    SYS     SYS     NODE    NODE    PIX      X   0-3"),
     "unexpected cells after the matrix"),
    (L40S.replace("  NIC1: mlx5_1", "  NIC1: mlx5_1\n  NIC7: mlx5_7"), "NIC Legend names NIC7"),
    (HGX.replace("GPU1    GPU2", "GPU2    GPU1"), "out of order"),
])
def test_unreadable_topo_is_refused(broken, message):
    with pytest.raises(TopologyParseError, match=re.escape(message)):
        parse(broken)


NVLINK = text("v100-nvlink-status-inactive-links.txt")


@pytest.mark.parametrize(("broken", "message"), [
    (NVLINK.replace("Link 2: 25.781 GB/s", "Link 2: fast"), "line 6: 'Link 2: fast' is not a 'Link N"),
    (NVLINK.replace("Link 4:", "Link 1:"), "GPU 3 link 1 appears twice"),
    (NVLINK + NVLINK.split("....\n")[1], "GPU 3 appears twice"),
])
def test_unreadable_nvlink_is_refused(broken, message):
    with pytest.raises(TopologyParseError, match=re.escape(message)):
        parse_nvlink(broken)


def test_nvlink_parser_refuses_other_text():
    with pytest.raises(TopologyParseError, match="no nvlink -s GPU line"):
        parse_nvlink(HGX)


@pytest.mark.parametrize(("broken", "message"), [
    ("0, NVIDIA L40S, GPU-1, 46068, 570.133.20\n", "5 fields, expected 6"),
    ("0, NVIDIA L40S, GPU-1, 46068 MiB, 570.133.20, 00000000:01:00.0\n", "must be numbers"),
    ("0, NVIDIA L40S, GPU-1, 46068, 570.133.20, 00000000:01:00.0\n" * 2, "GPU 0 appears twice"),
    ("\n", "no --query-gpu lines"),
])
def test_unreadable_query_gpu_is_refused(broken, message):
    with pytest.raises(TopologyParseError, match=re.escape(message)):
        parse_query_gpu(broken)


# --- the tier check -----------------------------------------------------------------------------

H100_NAME = "NVIDIA H100 80GB HBM3"


def test_hgx_h100_meets_a_tp8_nvlink_tier():
    problems = check_tier(
        parse_topo(HGX), nvlink=parse_nvlink(text("h100-8x-nvlink-status.txt")),
        gpus=parse_query_gpu(query("h100-8x-query-gpu.csv")), expected_count=8, expected_names=[H100_NAME],
        tensor_parallel=8, require_nvlink=True, min_links=18)
    assert problems == []


def test_too_few_links_names_each_pair():
    problems = check_tier(parse_topo(HGX), nvlink=parse_nvlink(text("h100-8x-nvlink-status.txt")),
                          tensor_parallel=4, require_nvlink=True, min_links=20)
    assert len(problems) == 12
    assert problems[0] == "GPU0-GPU1: NV18, need at least NV20 for tensor_parallel=4"
    assert problems[-1] == "GPU6-GPU7: NV18, need at least NV20 for tensor_parallel=4"


def test_pcie_box_fails_a_tp4_nvlink_tier_naming_pairs():
    problems = check_tier(parse_topo(L40S), tensor_parallel=4, require_nvlink=True)
    assert problems == [
        "GPU0-GPU1: NODE, need NVLink for tensor_parallel=4",
        "GPU0-GPU2: SYS, need NVLink for tensor_parallel=4",
        "GPU0-GPU3: SYS, need NVLink for tensor_parallel=4",
        "GPU1-GPU2: SYS, need NVLink for tensor_parallel=4",
        "GPU1-GPU3: SYS, need NVLink for tensor_parallel=4",
        "GPU2-GPU3: NODE, need NVLink for tensor_parallel=4",
    ]


def test_pcie_box_is_fine_without_an_nvlink_requirement():
    assert check_tier(parse_topo(L40S), expected_count=4, tensor_parallel=4) == []


def test_bridged_pairs_fail_consecutive_tp_groups():
    topo = parse_topo(text("rtx3090-4x-two-nvlink-pairs-topo.txt"))
    gpus = parse_query_gpu(query("rtx3090-4x-query-gpu.csv"))
    assert check_tier(topo, gpus=gpus, tensor_parallel=2, require_nvlink=True, min_links=4) == [
        "GPU0-GPU1: PHB, need NVLink for tensor_parallel=2",
        "GPU2-GPU3: PHB, need NVLink for tensor_parallel=2",
    ]


def test_inactive_link_is_named():
    problems = check_tier(parse_topo(text("h100-4x-nv6-4nic-topo.txt")),
                          nvlink=parse_nvlink(text("h100-4x-nvlink-status-one-inactive.txt")),
                          tensor_parallel=4, require_nvlink=True, min_links=6)
    assert problems == ["GPU2 link 3: inactive"]


def test_nvlink_status_missing_gpus_and_unread_status():
    topo = parse_topo(text("h100-4x-nv6-4nic-topo.txt"))
    assert check_tier(topo, nvlink=parse_nvlink(NVLINK), tensor_parallel=4, require_nvlink=True) == [
        "GPU0: missing from nvidia-smi nvlink -s",
        "GPU1: missing from nvidia-smi nvlink -s",
        "GPU2: missing from nvidia-smi nvlink -s",
        "GPU3 link 3: inactive",
        "GPU3 link 5: inactive",
    ]
    assert check_tier(topo, tensor_parallel=2, require_nvlink=True) == [
        "NVLink status: not read; run nvidia-smi nvlink -s to check for inactive links"]


def test_all_links_inactive_is_named():
    pair = "        GPU0    GPU1    CPU Affinity    NUMA Affinity\nGPU0     X      NV12    0-31    0\nGPU1    NV12     X      0-31    0\n"
    problems = check_tier(parse_topo(pair), nvlink=parse_nvlink(text("a100-pcie-nvlink-status-all-inactive.txt")),
                          tensor_parallel=2, require_nvlink=True)
    assert problems == ["GPU0: all NVLinks inactive", "GPU1: all NVLinks inactive"]


def test_count_model_and_tp_size_mismatches():
    topo = parse_topo(text("rtx3090-4x-two-nvlink-pairs-topo.txt"))
    gpus = parse_query_gpu(query("rtx3090-4x-query-gpu.csv"))
    problems = check_tier(topo, gpus=gpus[:3], expected_count=8, expected_names=[H100_NAME], tensor_parallel=8)
    assert problems == [
        "GPU count: found 4, expected 8",
        "GPU count: nvidia-smi --query-gpu lists 3, topo -m lists 4",
        f"GPU0: NVIDIA GeForce RTX 3090, expected {H100_NAME}",
        f"GPU1: NVIDIA GeForce RTX 3090, expected {H100_NAME}",
        f"GPU2: NVIDIA GeForce RTX 3090, expected {H100_NAME}",
        "tensor_parallel=8: needs 8 GPUs, found 4",
    ]
    assert check_tier(topo, expected_names=[H100_NAME]) == [
        f"GPU model: no nvidia-smi --query-gpu reading to compare with {H100_NAME}"]


def test_every_edition_name_of_a_catalog_gpu_passes():
    from tierkit.catalog import GPUS

    names = GPUS["rtx-pro-6000"].smi_names
    topo = parse_topo(L40S)
    editions = [names[i % len(names)] for i in range(topo.gpu_count)]
    rows = "".join(f"{i}, {name}, GPU-{i}, 97887, 580.159.03, 00000000:0{i}:00.0\n" for i, name in enumerate(editions))
    gpus = parse_query_gpu(rows)
    assert check_tier(topo, gpus=gpus, expected_names=names) == []
    assert check_tier(topo, gpus=gpus, expected_names=names[:1])[0].startswith(f"GPU1: {names[1]}, expected")


def test_bad_expectations_are_a_problem_not_a_crash():
    assert check_tier(parse_topo(L40S), tensor_parallel=0) == [
        "tensor_parallel=0, min_links=0: tensor_parallel must be 1 or more and min_links 0 or more"]


def test_tp_groups_are_consecutive_and_full():
    assert tp_groups(8, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert tp_groups(6, 4) == [[0, 1, 2, 3]]
    assert tp_groups(2, 4) == []
