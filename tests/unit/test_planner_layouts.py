"""How a server's GPUs serve: one engine (TP over all of them) or data-parallel engines, the rule
that picks one (docs/planner-fit.md, "One engine or several"), and how `tierkit plan` shows both."""

from __future__ import annotations

import json

import pytest
from plan_cli import run_plan

from tierkit import catalog, planner

M70 = catalog.MODELS["llama-3.3-70b"]


def sized(gpu: str, quant: str, gpus: int = 4, **kw: object) -> planner.Plan:
    return planner.plan(M70, quant, catalog.GPUS[gpu], gpus, context=8192, **kw)  # type: ignore[arg-type]


def test_pcie_card_that_holds_the_model_alone_runs_an_engine_per_gpu() -> None:
    p = sized("rtx-pro-6000", "awq")
    assert (p.layout, p.tensor_parallel, p.pipeline_parallel, p.data_parallel, p.engines) == ("dp", 1, 1, 4, 4)
    one = planner.plan(M70, "awq", catalog.GPUS["rtx-pro-6000"], 1, context=8192)
    assert p.single_stream_tok_s == one.single_stream_tok_s
    assert p.expected_tok_s == pytest.approx(4 * one.single_stream_tok_s, abs=0.2)  # one stream on each engine
    assert p.max_users == 4 * one.max_users and p.aggregate_tok_s == pytest.approx(4 * one.aggregate_tok_s, abs=0.5)
    alt = p.alternative
    assert alt is not None and (alt.layout, alt.tensor_parallel, alt.data_parallel, alt.engines) == ("tp", 4, 1, 1)
    # the trade: one TP engine streams faster and pools its KV cache; the engines decode more streams at once
    assert alt.single_stream_tok_s > 1.5 * p.single_stream_tok_s and alt.max_users > p.max_users
    assert p.expected_tok_s > 2 * alt.expected_tok_s
    assert any("vLLM --data-parallel-size 4" in n and "allow_pcie_tensor_parallel" in n for n in p.notes)


def test_forcing_one_engine_sizes_tp_and_shows_the_engines_beside_it() -> None:
    p = sized("rtx-pro-6000", "awq", data_parallel=1)
    assert (p.layout, p.tensor_parallel, p.data_parallel) == ("tp", 4, 1)
    assert p.alternative is not None and p.alternative.data_parallel == 4
    assert p.expected_tok_s == p.single_stream_tok_s == sized("rtx-pro-6000", "awq").alternative.single_stream_tok_s  # type: ignore[union-attr]


def test_nvlink_keeps_one_tensor_parallel_engine() -> None:
    p = sized("h100-sxm", "fp8")
    assert (p.layout, p.tensor_parallel, p.data_parallel) == ("tp", 4, 1)
    assert p.alternative is not None and p.alternative.data_parallel == 4  # shown, not chosen
    assert planner.recommended_layout(M70, "fp8", catalog.GPUS["h100-sxm"], 4, 8192).data_parallel == 1


def test_bridged_pairs_run_an_engine_per_pair_when_a_pair_holds_the_model() -> None:
    """Qwen2.5-72B FP8 does not fit one H100 PCIe at 8k; a bridged pair holds it with room to spare."""
    model, gpu = catalog.MODELS["qwen2.5-72b"], catalog.GPUS["h100-pcie"]
    layout = planner.recommended_layout(model, "fp8", gpu, 4, 8192)
    assert (layout.tensor_parallel, layout.pipeline_parallel, layout.data_parallel) == (2, 1, 2)
    assert layout == planner.most_engines(model, "fp8", gpu, 4, 8192)


def test_engines_that_barely_hold_the_model_are_not_recommended() -> None:
    """2 engines of an NVLinked pair hold 70B BF16 at 8k with room for one user each: one engine carries 54."""
    p = sized("h100-pcie", "bf16")
    assert (p.tensor_parallel, p.data_parallel) == (4, 1)
    assert p.alternative is not None and p.alternative.max_users < planner.DP_MIN_USER_SHARE * p.max_users


def test_no_smaller_engine_holds_the_model_means_one_engine() -> None:
    p = sized("rtx-pro-6000", "bf16", gpus=2)
    assert (p.tensor_parallel, p.data_parallel) == (2, 1) and p.alternative is None


def test_users_asked_for_pick_the_layout_that_carries_them() -> None:
    p = sized("rtx-pro-6000", "awq", users=100)
    assert p.fits and (p.tensor_parallel, p.data_parallel, p.max_users) == (4, 1, 115)
    assert p.alternative is not None and not p.alternative.fits


def test_a_split_is_one_engine() -> None:
    p = planner.plan(M70, "awq", catalog.GPUS["rtx-pro-6000"], 4, 2, 8192, shape="split")
    assert (p.data_parallel, p.engines, p.alternative) == (1, 1, None)
    with pytest.raises(ValueError, match="data_parallel must be 1"):
        planner.plan(M70, "awq", catalog.GPUS["rtx-pro-6000"], 4, 2, 8192, shape="split", data_parallel=4)


def test_plan_table_and_json_say_the_layout_and_its_alternative() -> None:
    code, out, _ = run_plan("--model", "llama-3.3-70b", "--quant", "awq", "--gpus", "4")
    assert code == 0 and "TP=1 PP=1 DP=4: 4 engines" in out and "instead, TP=4 PP=1 DP=1" in out
    code, out, _ = run_plan("--model", "llama-3.3-70b", "--quant", "awq", "--gpus", "4", "--data-parallel", "1", "--json")
    p = json.loads(out)
    assert code == 0 and (p["layout"], p["tensor_parallel"], p["data_parallel"], p["engines"]) == ("tp", 4, 1, 1)
    assert p["alternative"]["data_parallel"] == 4 and p["alternative"]["expected_tok_s"] > p["expected_tok_s"]
    code, out, _ = run_plan("--model", "llama-3.3-70b", "--quant", "awq", "--gpus", "4", "--servers", "2",
                            "--shape", "replicas", "--data-parallel", "2", "--json")
    p = json.loads(out)
    assert code == 0 and (p["tensor_parallel"], p["data_parallel"], p["engines"]) == (2, 2, 4)


def test_plan_of_a_stack_file_adds_the_planners_layout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "Pulumi.pcie.yaml"
    f.write_text("config:\n  tierkit:tier:\n    tier: multi-gpu\n    provider: {kind: lab, name: pcie}\n"
                 "    gpu: {model: rtx-pro-6000, count: 4}\n    model: {key: llama-3.3-70b, quantization: awq, hf_id: casperhansen/llama-3.3-70b-instruct-awq}\n"
                 "    serving: {allow_pcie_tensor_parallel: true}\n")
    code, out, _ = run_plan("--file", str(f), "--json")
    p = json.loads(out)
    assert code == 0 and (p["tensor_parallel"], p["data_parallel"]) == (4, 1)  # the spec's layout, as it stands
    assert any(n.startswith("the planner recommends TP=1 PP=1 DP=4") for n in p["notes"])
    code, _, err = run_plan("--file", str(f), "--gpus", "2")
    assert code == 2 and err.strip() == "error: --gpus: --stack/--file plan the spec as it stands; drop --gpus, or drop --stack/--file"


def test_forced_engines_too_small_name_fewer_engines() -> None:
    code, out, _ = run_plan("--model", "llama-3.3-70b", "--gpus", "4", "--data-parallel", "4", "--json")
    p = json.loads(out)
    assert code == 1 and not p["fits"] and p["notes"][-1] == "needs --data-parallel 2 (fewer, larger engines)"
    assert not any("engines of 1 GPU per server" in n for n in p["notes"])  # no layout rationale for a misfit
