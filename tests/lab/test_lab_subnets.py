"""A lab owns its /24 for as long as its namespaces exist, whatever became of its record."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from tierkit.lab.state import record_path

pytestmark = pytest.mark.lab


def test_a_lab_with_an_unreadable_record_keeps_its_subnet(make_lab: Callable[..., Any], find_leftovers: Callable[[str], list[str]]) -> None:
    with make_lab("tksub-a", 1, "l40s", 1, "pcie") as first:
        record_path("tksub-a").write_text("{}\n")  # a torn record, or one from an older tierkit
        with make_lab("tksub-b", 1, "l40s", 1, "pcie") as second:
            assert second.subnet != first.subnet
    assert find_leftovers("tksub-a") == []
