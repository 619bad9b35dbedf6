"""`tierkit plan` through its console script, as users run it: JSON keys, exit codes, error lines.

The figures themselves (the published table, the two shapes, --compare) are checked in-process by
tests/unit/test_planner_table.py and tests/unit/test_planner_shapes.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cli

TIERKIT = str(Path(sys.executable).parent / "tierkit")  # the console script of this venv


def plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TIERKIT, "plan", *args], capture_output=True, text=True, timeout=60)


def test_json_keys_and_exit_0_when_it_fits() -> None:
    p = plan("--model", "llama-3.1-8b", "--gpu", "l40s", "--json")
    assert p.returncode == 0, p.stderr
    assert set(json.loads(p.stdout)) == {"fits", "tier", "shape", "servers", "gpus_per_server", "layout",
                                         "tensor_parallel", "pipeline_parallel", "data_parallel", "engines",
                                         "weights_gib", "kv_cache_gib", "max_users", "expected_tok_s",
                                         "single_stream_tok_s", "aggregate_tok_s", "max_fp16_params_b",
                                         "alternative", "notes"}


def test_exit_1_when_nothing_fits_and_the_notes_name_the_fix() -> None:
    p = plan("--params-b", "300", "--quant", "fp16", "--gpus", "4", "--servers", "2", "--shape", "replicas", "--json")
    assert p.returncode == 1
    assert any("split over the 2 servers" in n for n in json.loads(p.stdout)["notes"])


def test_compare_json_through_the_console_script() -> None:
    p = plan("--model", "llama-3.3-70b", "--quant", "awq", "--compare", "--gpu-hour-usd", "2.5", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["rows"]
    assert [r["tier"] for r in rows] == ["single-gpu", "multi-gpu", "failover", "multi-server"]
    assert all(r["usd_per_million_tokens"] > 0 for r in rows)


def test_a_bad_flag_is_one_error_line_and_exit_2() -> None:
    p = plan("--model", "llama-3.3-70b", "--compare", "--gpu-hour-usd", "nan")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip() == "error: --gpu-hour-usd: must be a finite number above 0, got nan; e.g. --gpu-hour-usd 2.5"
