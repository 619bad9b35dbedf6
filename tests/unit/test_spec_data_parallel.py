"""serving.data_parallel from the spec to the vllm role: the rules, the plan, the inventory, the
planner's advice that `tierkit validate` prints, and the lab, which runs one engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tierkit import inventory as inv
from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.spec import layout_advice, load_stack, parse_spec, plan_for_spec

ROOT = Path(__file__).resolve().parents[2]


def spec_data(**serving: Any) -> dict[str, Any]:
    return {
        "tier": "multi-gpu",
        "provider": {"kind": "baremetal", "hosts": [{"name": "a", "address": "192.0.2.10", "key_path": __file__}]},
        "gpu": {"model": "rtx-pro-6000", "count": 4},
        "model": {"key": "llama-3.3-70b", "quantization": "awq", "hf_id": "casperhansen/llama-3.3-70b-instruct-awq"},
        "serving": serving,
    }


def host() -> list[Host]:
    return [Host(name="a", address="192.0.2.10", key_path="/k")]


def test_data_parallel_splits_the_gpus_into_engines() -> None:
    spec = parse_spec(spec_data(data_parallel=4))
    assert (spec.tensor_parallel, spec.pipeline_parallel, spec.data_parallel) == (1, 1, 4)
    plan = plan_for_spec(spec)
    assert (plan.tensor_parallel, plan.data_parallel, plan.engines, plan.layout) == (1, 4, 4, "dp")
    assert parse_spec(spec_data(data_parallel=2, tensor_parallel=2, allow_pcie_tensor_parallel=True)).tensor_parallel == 2


def test_the_default_is_one_engine() -> None:
    spec = parse_spec(spec_data(allow_pcie_tensor_parallel=True))
    assert (spec.tensor_parallel, spec.data_parallel) == (4, 1)
    assert plan_for_spec(spec).engines == 1


@pytest.mark.parametrize(("serving", "message"), [
    ({"data_parallel": 3}, "serving.data_parallel: 3 engines do not share gpu.count 4 evenly; use one of 1, 2, 4"),
    ({"data_parallel": 2, "tensor_parallel": 4, "allow_pcie_tensor_parallel": True},
     "serving: tensor_parallel 4 x pipeline_parallel 1 x data_parallel 2 = 8, but a server has 4 GPUs"),
    ({"data_parallel": 9}, "serving.data_parallel: input should be less than or equal to 8, got 9"),
    ({}, "use data_parallel: 4 with tensor_parallel: 1 (4 engines that each hold the model)"),
])
def test_bad_layouts_are_one_line_naming_the_field(serving: dict[str, Any], message: str) -> None:
    with pytest.raises(TierkitError) as err:
        parse_spec(spec_data(**serving))
    assert len(err.value.args) == 1 and message in err.value.args[0], err.value.args


def test_multi_server_keeps_one_engine() -> None:
    data = {"tier": "multi-server", "provider": {"kind": "baremetal", "hosts": [
        {"name": "a", "address": "192.0.2.10", "key_path": __file__}, {"name": "b", "address": "192.0.2.11", "key_path": __file__}]},
        "gpu": {"model": "h100-sxm", "count": 4}, "model": {"key": "llama-3.3-70b", "quantization": "fp8"},
        "serving": {"data_parallel": 2}}
    with pytest.raises(TierkitError, match="serving.data_parallel: multi-server runs one engine over all its servers"):
        parse_spec(data)


def test_validate_names_the_planners_layout_when_the_spec_differs() -> None:
    advice = layout_advice(parse_spec(spec_data(allow_pcie_tensor_parallel=True)))
    assert advice is not None and advice.startswith("the planner recommends TP=1 PP=1 DP=4 (4 engines")
    assert "data_parallel: 4}" in advice
    assert layout_advice(parse_spec(spec_data(data_parallel=4))) is None
    assert layout_advice(load_stack("multi-gpu", ROOT)) is None  # NVLink: one TP engine, as the stack says


def test_inventory_passes_the_engines_to_the_vllm_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tierkit.providers.baremetal.source_address", lambda destination: "198.51.100.7")
    gv = inv.render(parse_spec(spec_data(data_parallel=4)), host()).group_vars
    assert (gv["vllm_data_parallel_size"], gv["vllm_tensor_parallel_size"], gv["gpu_topology_tensor_parallel"]) == (4, 1, 1)
    gv = inv.render(parse_spec(spec_data(allow_pcie_tensor_parallel=True)), host()).group_vars
    assert gv["vllm_data_parallel_size"] == 1


def test_the_lab_runs_one_engine_and_says_so() -> None:
    from tierkit import providers

    data = spec_data(data_parallel=4)
    data["provider"] = {"kind": "lab", "name": "dp"}
    spec = parse_spec(data)
    lab = providers.get(spec)
    hosts = [Host(name="dp-1", address="10.211.7.11", key_path="/k", netns="tks-dp")]
    assert inv.render(spec, hosts).group_vars["vllm_data_parallel_size"] == 1
    notes = lab.notes(spec, plan_for_spec(spec), [], "http://10.211.7.11:8000")
    assert any("vLLM ran one engine, not the spec's 4" in n and "never run" in n for n in notes)
