"""`tierkit up --stack multi-gpu` end to end on the lab: a simulated 4x H100 SXM host (NV18 over
NVSwitch) whose topology gate checks the 4-way NVLink for TP=4, while vLLM's CPU build really
serves the tiny model tensor parallel, one rank per core (TP=2 on two cores, gloo over shared
memory); the output says which was simulated and which ran."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tierkit.lab.cpu_ranks import lab_ranks
from tierkit.spec import load_stack
from up_support import ROOT, Up, deployed, down_leaves_nothing, lab_name, report_timing, tierkit, up, vllm_main_pid

pytestmark = pytest.mark.lab

STACK = "multi-gpu"


@pytest.fixture(scope="module")
def first() -> Iterator[Up]:
    yield from deployed(STACK)


def test_up_from_nothing_passes_its_gates(first: Up) -> None:
    assert first.proc.returncode == 0, first.log[-3000:]
    assert first.log.splitlines()[0].startswith("tierkit up: rehearsal (no Pulumi CLI)")
    outputs = first.result["outputs"]
    assert outputs["plan"]["tensor_parallel"] == 4
    assert outputs["smoke"]["passed"] is True
    ran = lab_ranks(load_stack(STACK, ROOT))
    said = f"vLLM on the CPU ran TP={ran.tensor_parallel} PP=1 over shared memory (gloo) on one host, one rank per core"
    assert any("simulated 4x h100-sxm" in n and "TP=4" in n and said in n for n in outputs["notes"]), outputs["notes"]
    host_ = outputs["hosts"][0]["name"]
    unit = tierkit("lab", "ssh", host_, "--", "systemctl", "show", "-p", "ExecStart", "-p", "Environment",
                   "--value", "vllm.service", timeout=60).stdout
    assert f"--tensor-parallel-size {ran.tensor_parallel}" in unit
    assert f"VLLM_CPU_OMP_THREADS_BIND={ran.binds[0]}" in unit
    assert "These figures come from a CPU rehearsal" in outputs["smoke"]["gate_source"]
    host = outputs["hosts"][0]["name"]
    links = tierkit("lab", "ssh", host, "--", "nvidia-smi", "topo", "-m", timeout=60).stdout
    assert links.count("NV18") == 12, "the simulated host has 4 GPUs, NV18 between every pair"
    report_timing(STACK, "cold (no lab; image, wheelhouse and model cached)", first.seconds)


def test_second_up_changes_nothing(first: Up) -> None:
    host = first.result["outputs"]["hosts"][0]["name"]
    pid = vllm_main_pid(host)
    second = up(STACK)
    assert second.proc.returncode == 0, second.log[-3000:]
    assert "ran 0 command(s) (none); 5 unchanged" in second.log, "the record stands for every command"
    assert vllm_main_pid(host) == pid
    assert second.result["outputs"]["smoke"]["passed"] is True
    report_timing(STACK, "warm (second up)", second.seconds)


def test_down_leaves_nothing(first: Up, find_leftovers: Callable[[str], list[str]]) -> None:
    down_leaves_nothing(STACK, find_leftovers)
