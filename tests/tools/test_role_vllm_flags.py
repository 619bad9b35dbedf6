"""The vllm role's unit as Ansible renders it from tierkit's inventory: data-parallel engines.

`serving.data_parallel` reaches `vllm serve` as --data-parallel-size, only when above 1, next to
the tensor and pipeline sizes of each engine. vLLM's data parallelism is checked against its
documents and source only (docs/vllm.md#data-parallelism): the lab does not run it, so this render
is where the flag is tested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ansible_render import render_play, template_play
from tierkit.hosts import Host
from tierkit.spec import parse_spec

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "vllm"
HOST = Host(name="gpu-a", address="192.0.2.10", key_path="/nonexistent/key")


def spec_data(serving: dict[str, Any]) -> dict[str, Any]:
    return {
        "tier": "multi-gpu",
        "provider": {"kind": "baremetal", "hosts": [{"name": HOST.name, "address": HOST.address, "key_path": __file__}]},
        "gpu": {"model": "rtx-pro-6000", "count": 4},
        "model": {"key": "llama-3.3-70b", "quantization": "awq", "hf_id": "casperhansen/llama-3.3-70b-instruct-awq"},
        "serving": {**serving, "allowed_sources": ["192.0.2.0/24"]},
    }


def exec_start(serving: dict[str, Any], work: Path) -> list[str]:
    out = work / "out"
    (out / HOST.name).mkdir(parents=True)
    spec = parse_spec(spec_data(serving))
    render_play(ROLE, spec, [HOST], template_play(ROLE, "gpu_servers", out), work, {"files": {"vllm.service": "vllm.service.j2"}})
    unit = (out / HOST.name / "vllm.service").read_text()
    line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    return [w.strip('"') for w in line.removeprefix("ExecStart=").split()]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_engines_reach_vllm_serve(tmp_path: Path) -> None:
    argv = exec_start({"data_parallel": 4}, tmp_path)
    assert flag(argv, "--data-parallel-size") == "4"
    assert flag(argv, "--tensor-parallel-size") == "1" and flag(argv, "--pipeline-parallel-size") == "1"
    assert flag(argv, "--quantization") == "awq" and "--nnodes" not in argv


def test_one_engine_passes_no_data_parallel_flag(tmp_path: Path) -> None:
    argv = exec_start({"allow_pcie_tensor_parallel": True}, tmp_path)
    assert "--data-parallel-size" not in argv and flag(argv, "--tensor-parallel-size") == "4"
