"""`tierkit topology parse`: JSON keys, the table, and exit 2 with one line on unreadable input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvidia-smi"
TIERKIT = str(Path(sys.executable).parent / "tierkit")


def tierkit(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TIERKIT, "topology", "parse", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "COLUMNS": "120"})


def test_topo_json():
    result = tierkit(str(FIXTURES / "rtx3090-4x-two-nvlink-pairs-topo.txt"), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kind"] == "topo"
    assert data["gpu_count"] == 4
    assert data["nvlink"] == [[0, 2, 4], [1, 3, 4]]
    assert set(data) >= {"devices", "matrix", "gpus", "nics"}


def test_nvlink_json_from_stdin():
    capture = (FIXTURES / "v100-nvlink-status-inactive-links.txt").read_text()
    result = tierkit("-", "--json", stdin=capture)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kind"] == "nvlink"
    assert data["gpus"][0]["index"] == 3
    assert data["gpus"][0]["links"][3] == {"link": 3, "gbps": None, "active": False}
    assert data["gpus"][0]["links"][0] == {"link": 0, "gbps": 25.781, "active": True}
    assert data["inactive"] == [[3, 3], [3, 5]]


def test_table_shows_matrix_nics_and_pairs():
    result = tierkit(str(FIXTURES / "l40s-4x-pcie-node-sys-mlx5-topo.txt"))
    assert result.returncode == 0, result.stderr
    assert "4 GPU(s), 2 NIC(s)" in result.stdout
    assert "NIC0 = mlx5_0, NIC1 = mlx5_1" in result.stdout
    assert "0-95,192-287" in result.stdout
    assert "NVLink pairs: none (PCIe only)" in result.stdout
    nvlinked = tierkit(str(FIXTURES / "rtx3090-4x-two-nvlink-pairs-topo.txt"))
    assert "NVLink pairs: GPU0-GPU2 NV4, GPU1-GPU3 NV4" in nvlinked.stdout


def test_unreadable_input_exits_2_with_one_line(tmp_path):
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("Mon Nov 30 nvidia-smi: command not found\n")
    result = tierkit(str(garbage), "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: FILE: {garbage}: neither nvidia-smi topo -m"), result.stderr
    assert "Traceback" not in result.stderr


def test_broken_matrix_names_the_line(tmp_path):
    capture = (FIXTURES / "hgx-h100-8x-nv18-topo.txt").read_text().splitlines()
    truncated = tmp_path / "truncated.txt"
    truncated.write_text("\n".join(capture[:5]) + "\n")
    result = tierkit(str(truncated))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: FILE: {truncated}: line 6: expected the GPU3 row, found the end of the matrix; "
        "expected the output of `nvidia-smi topo -m` or `nvidia-smi nvlink -s`"]


def test_missing_file_exits_2(tmp_path):
    result = tierkit(str(tmp_path / "absent.txt"))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "cannot read" in result.stderr
