"""The published tier table (DESIGN.md "Planner facts") must come out of `tierkit plan`.

rtx-pro-6000 with llama-3.3-70b, 8k context; ±25% on throughput, ±15% on sizes and users.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.cli

THROUGHPUT_TOL = 0.25
SIZE_TOL = 0.15

# setup -> (gpus per server, servers, max FP16 model B (lower bound only when "+"), 70B Q4 tok/s,
#           users low, users high or None for "+")
TABLE = {
    "1 GPU": (1, 1, 40, False, 35, 15, 25),
    "4 GPUs": (4, 1, 160, False, 130, 60, 100),
    "2 servers x 4 GPUs": (4, 2, 320, True, 250, 120, None),
}


def plan_json(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "tierkit", "plan", "--json", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("setup", TABLE)
def test_published_row(setup: str) -> None:
    gpus, servers, fp16_b, fp16_plus, tok_s, users_lo, users_hi = TABLE[setup]
    q4 = plan_json("--model", "llama-3.3-70b", "--quant", "awq", "--gpu", "rtx-pro-6000",
                   "--gpus", str(gpus), "--servers", str(servers), "--context", "8192")
    assert q4["fits"] is True
    assert q4["servers"] == servers and q4["gpus_per_server"] == gpus
    assert abs(q4["expected_tok_s"] - tok_s) <= THROUGHPUT_TOL * tok_s, q4
    assert q4["max_fp16_params_b"] >= fp16_b * (1 - SIZE_TOL), q4
    if not fp16_plus:
        assert q4["max_fp16_params_b"] <= fp16_b * (1 + SIZE_TOL), q4
    assert q4["max_users"] >= users_lo * (1 - SIZE_TOL), q4
    if users_hi is not None:
        assert q4["max_users"] <= users_hi * (1 + SIZE_TOL), q4


def test_largest_fp16_model_really_fits_and_the_next_size_does_not() -> None:
    """max_fp16_params_b is consistent with the fit check it summarises."""
    one = plan_json("--params-b", "40", "--quant", "fp16", "--gpu", "rtx-pro-6000", "--gpus", "1", "--context", "2048")
    assert one["fits"] is True
    too_big = subprocess.run(
        [sys.executable, "-m", "tierkit", "plan", "--json", "--params-b", "60", "--quant", "fp16",
         "--gpu", "rtx-pro-6000", "--gpus", "1", "--context", "2048"], capture_output=True, text=True)
    assert json.loads(too_big.stdout)["fits"] is False
    assert too_big.returncode == 1
    assert any(n.startswith("needs 2x rtx-pro-6000") for n in json.loads(too_big.stdout)["notes"])


def test_json_keys_are_fixed() -> None:
    keys = set(plan_json("--model", "llama-3.1-8b", "--gpu", "l40s"))
    assert keys == {"fits", "tier", "servers", "gpus_per_server", "tensor_parallel", "pipeline_parallel",
                    "weights_gib", "kv_cache_gib", "max_users", "expected_tok_s", "max_fp16_params_b", "notes"}


def test_without_gpus_recommends_smallest_set_that_fits() -> None:
    p = plan_json("--model", "llama-3.3-70b", "--quant", "bf16", "--gpu", "rtx-pro-6000")
    assert (p["tier"], p["gpus_per_server"], p["fits"]) == ("multi-gpu", 2, True)
    small = plan_json("--model", "llama-3.1-8b", "--gpu", "rtx-pro-6000")
    assert (small["tier"], small["gpus_per_server"]) == ("single-gpu", 1)


def test_users_raise_the_recommendation() -> None:
    p = plan_json("--model", "llama-3.3-70b", "--quant", "awq", "--gpu", "rtx-pro-6000", "--users", "60")
    assert p["gpus_per_server"] == 4 and p["max_users"] >= 60


def test_weights_match_published_f16_size() -> None:
    """DESIGN.md: Llama-3-70B F16 is 131 GiB."""
    p = plan_json("--model", "llama-3.3-70b", "--quant", "fp16", "--gpu", "h200", "--gpus", "2")
    assert abs(p["weights_gib"] - 131) <= 0.15 * 131
