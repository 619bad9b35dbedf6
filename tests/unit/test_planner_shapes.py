"""`tierkit plan` on two servers or more: the two shapes, the recommendation, --compare, flag errors."""

from __future__ import annotations

import json

import pytest
from plan_cli import run_plan

from tierkit import catalog, planner
from tierkit.compare import compare

BIG = ("--params-b", "300", "--quant", "fp16", "--gpu", "rtx-pro-6000", "--gpus", "4", "--servers", "2")


def test_tier_names_follow_the_shape() -> None:
    assert planner.tier_for(1, 1) == "single-gpu" and planner.tier_for(1, 4) == "multi-gpu"
    assert planner.tier_for(2, 4, "replicas") == "failover" and planner.tier_for(2, 4, "split") == "multi-server"
    assert planner.shape_for_tier("multi-server") == "split" and planner.shape_for_tier("failover") == "replicas"


def test_two_servers_without_a_shape_show_both_and_recommend_replicas_when_a_server_holds_the_model() -> None:
    code, out, _ = run_plan("--model", "llama-3.3-70b", "--quant", "awq", "--gpus", "4", "--servers", "2")
    assert code == 0
    assert "replicas" in out and "split" in out and "failover" in out and "multi-server" in out
    assert "recommended: replicas (tier failover)" in out and "Gbit/s per hop" in out


def test_a_model_too_big_for_one_server_recommends_the_split() -> None:
    code, out, _ = run_plan(*BIG, "--json")
    p = json.loads(out)
    assert code == 0 and (p["shape"], p["tier"], p["fits"]) == ("split", "multi-server", True)
    assert (p["tensor_parallel"], p["pipeline_parallel"]) == (4, 2)
    code, out, _ = run_plan(*BIG, "--shape", "replicas", "--json")
    p = json.loads(out)
    assert code == 1 and p["tier"] == "failover" and not p["fits"]
    assert any("one copy split over the 2 servers" in n for n in p["notes"])


def test_the_split_names_the_link_it_needs() -> None:
    p = planner.plan(catalog.MODELS["llama-3.1-405b"], "fp8", catalog.GPUS["h100-sxm"], 8, 2, 8192, shape="split")
    # a full 8k prompt's activations (8192 x 16384 x 2 bytes) cross a hop in 0.1 s at about 21 Gbit/s
    assert p.network_gbps == pytest.approx(21.5, abs=0.1)
    assert any("25 Gbps" in n for n in p.notes)
    assert planner.plan(catalog.MODELS["llama-3.1-405b"], "fp8", catalog.GPUS["h100-sxm"], 8, 2, 8192).network_gbps == 0


def test_compare_rows_and_costs() -> None:
    rows = compare(catalog.MODELS["llama-3.3-70b"], "awq", catalog.GPUS["rtx-pro-6000"], 4, 2, 8192, 2.5)
    assert [(r.setup, r.tier) for r in rows] == [
        ("1 GPU", "single-gpu"), ("4 GPUs", "multi-gpu"), ("2x4 replicas", "failover"), ("2x4 split", "multi-server")]
    # 4 engines of one GPU per server on the PCIe-only card: a token crosses no link; the split is one engine
    assert [(r.tensor_parallel, r.pipeline_parallel, r.data_parallel, r.engines) for r in rows] == [
        (1, 1, 1, 1), (1, 1, 4, 4), (1, 1, 4, 8), (4, 2, 1, 1)]
    assert [r.interconnect for r in rows] == ["none", "none", "none", "PCIe+network"]
    assert [r.expected_tok_s for r in rows] == [pytest.approx(r.single_stream_tok_s * r.engines, abs=0.05 * r.engines) for r in rows]
    assert [r.usd_per_hour for r in rows] == [2.5, 10.0, 20.0, 20.0]
    for r in rows:
        assert r.usd_per_million_tokens == pytest.approx(r.usd_per_hour / (r.aggregate_tok_s * 3600) * 1e6, rel=0.01)
    assert rows[3].max_fp16_params_b > 320 > rows[2].max_fp16_params_b


def test_compare_json_and_table() -> None:
    code, out, _ = run_plan("--model", "llama-3.3-70b", "--quant", "awq", "--compare", "--json")
    data = json.loads(out)
    assert code == 0 and len(data["rows"]) == 4 and data["gpu_hour_usd"] is None
    assert data["rows"][0]["usd_per_million_tokens"] is None
    code, out, _ = run_plan("--model", "llama-3.1-405b", "--quant", "fp8", "--gpu", "h100-sxm", "--gpus", "8",
                            "--compare", "--gpu-hour-usd", "3")
    assert code == 0 and "2x8 split" in out and "multi-server" in out and "NVLink+network" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--compare", "--gpu-hour-usd", "nan"), "--gpu-hour-usd: must be a finite number above 0, got nan"),
        (("--compare", "--gpu-hour-usd", "-1"), "--gpu-hour-usd: must be a finite number above 0, got -1"),
        (("--compare", "--gpu-hour-usd", "inf"), "--gpu-hour-usd: must be a finite number above 0, got inf"),
        (("--gpu-hour-usd", "2"), "--gpu-hour-usd: prices the --compare table; add --compare"),
        (("--servers", "2", "--shape", "both"), "--shape: unknown shape 'both'; choose one of: replicas, split"),
        (("--shape", "split",), "--shape: says how 2 or more servers serve"),
        (("--compare", "--gpus", "1"), "--gpus: --compare needs 2 or more GPUs per server"),
        (("--compare", "--servers", "1"), "--servers: --compare needs 2 or more servers"),
        (("--servers", "9",), "Invalid value for '--servers'"),
        (("--data-parallel", "2",), "--data-parallel: needs --gpus"),
        (("--gpus", "4", "--data-parallel", "3"), "--data-parallel: 3 engines do not share --gpus 4 evenly; use one of 1, 2, 4"),
        (("--gpus", "4", "--servers", "2", "--data-parallel", "4"), "--data-parallel: a split runs one engine over all"),
        (("--compare", "--data-parallel", "1"), "--data-parallel: --compare shows each setup's recommended layout"),
    ],
)
def test_bad_flags_are_one_error_line(args: tuple[str, ...], message: str) -> None:
    code, out, err = run_plan("--model", "llama-3.3-70b", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and message in err, err


def test_params_b_must_be_finite_and_positive() -> None:
    code, _, err = run_plan("--params-b", "nan")
    assert code == 2 and err.strip() == "error: --params-b: must be a finite number above 0, got nan; e.g. --params-b 70"
