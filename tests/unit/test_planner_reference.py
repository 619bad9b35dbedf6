"""The planner against the published reference table (tests/unit/data/planner_reference.yaml)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from tierkit import planner_reference as ref

TABLE = Path(__file__).parent / "data" / "planner_reference.yaml"


def test_the_table_has_ten_rows_or_more_each_with_its_source() -> None:
    table = ref.load(TABLE)
    rows = [*table.decode, *table.memory]
    assert len(rows) >= 10
    assert len({r.id for r in rows}) == len(rows)
    for r in rows:
        assert r.source.startswith("https://") and r.engine and r.settings


def test_every_row_has_a_finite_estimate() -> None:
    for row in ref.errors(ref.load(TABLE)):
        assert math.isfinite(row.error), row


def test_a_row_with_an_unknown_gpu_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text(TABLE.read_text().replace("gpu: rtx-4090", "gpu: rtx-4099", 1))
    with pytest.raises(ValidationError, match="unknown GPU 'rtx-4099'"):
        ref.load(bad)


def test_a_memory_row_needs_exactly_one_measure(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text(TABLE.read_text().replace("kv_cache_gib: 53.29", "kv_cache_gib: 53.29\n    max_concurrency: 3\n    tokens_per_request: 9", 1))
    with pytest.raises(ValidationError, match="give kv_cache_gib, or max_concurrency"):
        ref.load(bad)
