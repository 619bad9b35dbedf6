"""The deploy's hard gates on lab hosts with 4 simulated H100 SXM GPUs and TP=4: the topology
gate passes NVLink, names a pair on a PCIe box and a link on a box with an inactive NVLink; the
NCCL gate passes NVLink (even with one link of 18 down) and fails the PCIe box's bus bandwidth
against the catalog's floor."""

from __future__ import annotations

import re

import pytest

from roles_support import failures, lab_spec, run
from tierkit.lab import Lab

pytestmark = pytest.mark.lab

BOXES = {
    "nvlink": ("tkgnv", "nvlink", []),
    "pcie": ("tkgpc", "pcie", []),
    "inactive": ("tkgin", "nvlink", ["inactive-link=1:3"]),
}


@pytest.fixture(scope="module", params=sorted(BOXES))
def box(request, tmp_path_factory):
    """A lab host with 4x H100 SXM and fabric manager installed by the driver stage."""
    name, topology, faults = BOXES[request.param]
    lab = Lab.up(name, 1, "h100-sxm", 4, topology, faults, quiet=True)
    try:
        spec = lab_spec("multi-gpu", lab)  # TP=4 over NVLink, as the multi-gpu stack asks
        workdir = tmp_path_factory.mktemp(name)
        drivers = run(spec, lab, "drivers", workdir)
        assert drivers.ok, failures(drivers)
        yield request.param, lab, spec, workdir
    finally:
        Lab.down(name)


def test_topology_gate(box):
    kind, lab, spec, workdir = box
    result = run(spec, lab, "topology", workdir)
    message = failures(result)
    if kind == "nvlink":
        assert result.ok, message
    elif kind == "pcie":
        assert not result.ok
        assert re.search(r"GPU\d-GPU\d: (NODE|SYS|PHB|PXB|PIX)", message), message
        assert "tensor_parallel=4" in message
    else:
        assert not result.ok
        assert re.search(r"GPU1\b.*[Ll]ink 3|[Ll]ink 3.*GPU1\b", message), message


def test_nccl_gate(box):
    kind, lab, spec, workdir = box
    result = run(spec, lab, "nccl", workdir)
    if kind in ("nvlink", "inactive"):
        # One dead link of 18 leaves the ring above the floor: only the topology gate sees it.
        assert result.ok, failures(result)
    else:
        assert not result.ok
        assert re.search(r"bus bandwidth [\d.]+ GB/s .* under the floor of [\d.]+ GB/s for 4 GPU", failures(result))
