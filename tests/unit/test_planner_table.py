"""The published tier comparison (docs/planner.md) against `tierkit plan`; README's sizing table is this
test's output (`readme_table()` must appear in README.md verbatim).

Published, for rtx-pro-6000 with a 70B model at 4 bits and 8k context: one GPU holds a 40B FP16
model, decodes 35 tok/s and carries 15-25 users; four GPUs: 160B, 130 tok/s, 60-100 users; two
servers of four: 320B+ (which only one copy split over both servers holds), 250 tok/s and 120-200+
users (two replicas). Tolerance: 25% on throughput, 15% on sizes and users.

Two throughput figures diverge from the refit planner, and the test keeps that divergence
explicit (DIVERGES) instead of widening a tolerance: see docs/planner-fit.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from plan_cli import run_plan
from tierkit import catalog, planner

README = Path(__file__).resolve().parents[2] / "README.md"
THROUGHPUT_TOL = 0.25
SIZE_TOL = 0.15
MODEL, QUANT, GPU, CONTEXT = "llama-3.3-70b", "awq", "rtx-pro-6000", 8192


@dataclass(frozen=True)
class Setup:
    label: str
    flags: str
    gpus: int
    servers: int
    shape: planner.Shape


SETUPS = {
    "1 GPU": Setup("1 GPU", "--gpus 1", 1, 1, "replicas"),
    "4 GPUs": Setup("4 GPUs", "--gpus 4", 4, 1, "replicas"),
    "2x4 replicas": Setup("2 servers x 4 GPUs, replicas", "--gpus 4 --servers 2 --shape replicas", 4, 2, "replicas"),
    "2x4 split": Setup("2 servers x 4 GPUs, split", "--gpus 4 --servers 2 --shape split", 4, 2, "split"),
}

# (setup, figure) -> published (low, high, as printed); high None means "low or more" ("320B+").
PUBLISHED: dict[tuple[str, str], tuple[float, float | None, str]] = {
    ("1 GPU", "fp16_b"): (40, 40, "40B"), ("1 GPU", "tok_s"): (35, 35, "35"), ("1 GPU", "users"): (15, 25, "15-25"),
    ("4 GPUs", "fp16_b"): (160, 160, "160B"), ("4 GPUs", "tok_s"): (130, 130, "130"),
    ("4 GPUs", "users"): (60, 100, "60-100"),
    ("2x4 split", "fp16_b"): (320, None, "320B+"),
    ("2x4 replicas", "tok_s"): (250, 250, "250"), ("2x4 replicas", "users"): (120, None, "120-200+"),
}

# Published figures the refit planner does not reproduce, and why (docs/planner-fit.md).
DIVERGES = {
    ("4 GPUs", "tok_s"): "the published figure scales one GPU's 35 tok/s almost 4x; measured tensor parallelism "
    "costs every token about 0.1 ms per layer of all-reduce over PCIe (the reference table's 3090 Ti rows: a 70B "
    "model at 4 bits decodes 46 tok/s on four of them)",
    ("2x4 replicas", "tok_s"): "two replicas of the 4-GPU figure above",
}


def plans() -> dict[str, planner.Plan]:
    m, g = catalog.MODELS[MODEL], catalog.GPUS[GPU]
    return {k: planner.plan(m, QUANT, g, s.gpus, s.servers, CONTEXT, shape=s.shape) for k, s in SETUPS.items()}


def figure(plan: planner.Plan, name: str) -> float:
    return {"fp16_b": plan.max_fp16_params_b, "tok_s": plan.expected_tok_s, "users": plan.max_users}[name]


def within(value: float, name: str, low: float, high: float | None) -> bool:
    tol = THROUGHPUT_TOL if name == "tok_s" else SIZE_TOL
    return low * (1 - tol) - 1e-9 <= value and (high is None or value <= high * (1 + tol) + 1e-9)


@pytest.mark.parametrize("key", PUBLISHED, ids=[f"{s}-{f}" for s, f in PUBLISHED])
def test_published_figure(key: tuple[str, str]) -> None:
    setup, name = key
    plan = plans()[setup]
    assert plan.fits and plan.servers == SETUPS[setup].servers and plan.gpus_per_server == SETUPS[setup].gpus
    value, (low, high, _) = figure(plan, name), PUBLISHED[key]
    if key in DIVERGES:
        assert not within(value, name, low, high) and value < low, f"{key} now agrees ({value}): drop it from DIVERGES"
    else:
        assert within(value, name, low, high), (key, value)


def test_the_2x4_row_comes_from_its_shapes() -> None:
    p = plans()
    assert (p["2x4 split"].tier, p["2x4 replicas"].tier) == ("multi-server", "failover")
    assert p["2x4 split"].max_fp16_params_b > 1.9 * p["2x4 replicas"].max_fp16_params_b  # replicas: per server
    assert p["2x4 replicas"].max_users == 2 * p["4 GPUs"].max_users
    assert p["2x4 replicas"].expected_tok_s == pytest.approx(2 * p["4 GPUs"].expected_tok_s, abs=0.2)


def _published(setup: str, name: str) -> str:
    return f" ({PUBLISHED[(setup, name)][2]})" if (setup, name) in PUBLISHED else ""


def readme_table() -> str:
    p = plans()
    lines = [
        "| setup | largest FP16 model | 70B Q4 (awq) tok/s | users at 8k context |",
        "|---|---|---|---|",
    ]
    for key, s in SETUPS.items():
        fp16 = f"{p[key].max_fp16_params_b:.0f}B{' per server' if key == '2x4 replicas' else ''}"
        lines.append(
            f"| {s.label} (`{s.flags}`) | {fp16}{_published(key, 'fp16_b')} "
            f"| {p[key].expected_tok_s:.0f}{_published(key, 'tok_s')} | {p[key].max_users}{_published(key, 'users')} |"
        )
    return "\n".join(lines)


def test_readme_shows_this_table() -> None:
    assert readme_table() in README.read_text(), "README's sizing table is out of date:\n" + readme_table()


def test_largest_fp16_model_really_fits_and_the_next_size_does_not() -> None:
    """max_fp16_params_b is consistent with the fit check it summarises."""
    code, out, _ = run_plan("--params-b", "42", "--quant", "fp16", "--gpu", GPU, "--gpus", "1", "--context", "2048", "--json")
    assert code == 0 and json.loads(out)["fits"] is True
    code, out, _ = run_plan("--params-b", "60", "--quant", "fp16", "--gpu", GPU, "--gpus", "1", "--context", "2048", "--json")
    assert code == 1 and json.loads(out)["fits"] is False
    assert any(n.startswith("needs 2x rtx-pro-6000") for n in json.loads(out)["notes"])


def test_json_keys_are_fixed() -> None:
    code, out, _ = run_plan("--model", "llama-3.1-8b", "--gpu", "l40s", "--json")
    assert code == 0
    assert set(json.loads(out)) == {"fits", "tier", "shape", "servers", "gpus_per_server", "tensor_parallel",
                                    "pipeline_parallel", "weights_gib", "kv_cache_gib", "max_users", "expected_tok_s",
                                    "max_fp16_params_b", "notes"}


def test_without_gpus_recommends_smallest_set_that_fits() -> None:
    p = json.loads(run_plan("--model", MODEL, "--quant", "bf16", "--gpu", GPU, "--json")[1])
    assert (p["tier"], p["gpus_per_server"], p["fits"]) == ("multi-gpu", 2, True)
    small = json.loads(run_plan("--model", "llama-3.1-8b", "--gpu", GPU, "--json")[1])
    assert (small["tier"], small["gpus_per_server"]) == ("single-gpu", 1)


def test_users_raise_the_recommendation() -> None:
    p = json.loads(run_plan("--model", MODEL, "--quant", QUANT, "--gpu", GPU, "--users", "60", "--json")[1])
    assert p["gpus_per_server"] == 4 and p["max_users"] >= 60


def test_weights_match_published_f16_size() -> None:
    """Llama-3.3-70B in F16: 70.6B parameters x 2 bytes = 131 GiB."""
    p = planner.plan(catalog.MODELS[MODEL], "fp16", catalog.GPUS["h200"], 2)
    assert abs(p.weights_gib - 131) <= 0.15 * 131


def test_70b_bf16_fits_two_80gb_gpus_as_vllm_serves_it() -> None:
    """vLLM's non-KV memory is about 3.4 GiB per GPU (+1.1 across GPUs), not 6: the fit holds a sequence."""
    p = planner.plan(catalog.MODELS[MODEL], "bf16", catalog.GPUS["h100-sxm"], 2, context=8192)
    assert p.fits and p.max_users >= 1
