#!/usr/bin/env python3
"""Fit the planner's constants to the published reference table and print the error per row.

usage: .venv/bin/python bench/planner_fit.py [--table tests/unit/data/planner_reference.yaml] [--json]

It prints each row's measured and estimated figure with the planner's current constants, the
median and worst error, then refits the constants (decode ones to the decode rows, memory ones to
the memory rows: least squares on the log of estimated / measured, by a zooming grid search) and
prints the same after the refit with the fitted values. The planner's constants are the fit's
output: when they are current, "before" and "after" agree.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tierkit import planner
from tierkit.planner_reference import RowError, errors, load, summary

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TABLE = ROOT / "tests" / "unit" / "data" / "planner_reference.yaml"

# Constants the fit may move, with the range it searches; those the planner lacks are skipped.
DECODE_BOUNDS: dict[str, tuple[float, float]] = {
    "DECODE_EFFICIENCY": (0.3, 1.0),
    "TOKEN_OVERHEAD_S": (0.0, 0.01),
    "TP_SYNC_S_PER_LAYER": (0.0, 0.0002),
    "TP_SYNC_PCIE_S_PER_LAYER": (0.0, 0.0005),
}
MEMORY_BOUNDS: dict[str, tuple[float, float]] = {
    "RUNTIME_OVERHEAD_GIB": (0.0, 8.0),
    "MULTI_GPU_OVERHEAD_GIB": (0.0, 6.0),
}
GRID = 9
ROUNDS = 10


def loss(rows: Callable[[], list[RowError]]) -> float:
    total = 0.0
    for r in rows():
        if r.predicted <= 0:
            return math.inf
        total += math.log(r.predicted / r.measured) ** 2
    return total


def fit(bounds: dict[str, tuple[float, float]], rows: Callable[[], list[RowError]]) -> dict[str, float]:
    """Coordinate grid search that zooms in around the best point; sets and returns the constants."""
    names = [n for n in bounds if hasattr(planner, n)]
    ranges = {n: bounds[n] for n in names}
    best = {n: getattr(planner, n) for n in names}
    for _ in range(ROUNDS):
        for name in names:
            lo, hi = ranges[name]
            candidates = [lo + (hi - lo) * i / (GRID - 1) for i in range(GRID)]
            scores = []
            for value in candidates:
                setattr(planner, name, value)
                scores.append((loss(rows), value))
            best[name] = min(scores)[1]
            setattr(planner, name, best[name])
            step = (hi - lo) / (GRID - 1)
            ranges[name] = (max(bounds[name][0], best[name] - 2 * step), min(bounds[name][1], best[name] + 2 * step))
    return best


def report(title: str, rows: list[RowError]) -> dict[str, Any]:
    median, worst = summary(rows)
    print(f"\n{title}")
    print(f"  {'row':34} {'kind':7} {'measured':>10} {'planner':>10}  error")
    for r in rows:
        print(f"  {r.id:34} {r.kind:7} {r.measured:10.2f} {r.predicted:10.2f}  {r.error:+7.1%}  {r.unit}")
    by_kind = {}
    for kind in ("decode", "memory"):
        k_median, k_worst = summary([r for r in rows if r.kind == kind])
        by_kind[kind] = {"median": k_median, "worst": k_worst}
        print(f"  {kind:6} rows: median |error| {k_median:.1%}, worst {k_worst:.1%}")
    print(f"  all {len(rows)} rows: median |error| {median:.1%}, worst {worst:.1%}")
    return {"median": median, "worst": worst, **by_kind, "rows": [{**r.__dict__, "error": r.error} for r in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="reference table (YAML)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = parser.parse_args()
    reference = load(args.table)
    current = {n: getattr(planner, n) for n in (*DECODE_BOUNDS, *MEMORY_BOUNDS) if hasattr(planner, n)}
    before = report("with the planner's current constants " + json.dumps(current), errors(reference))
    fitted = fit(DECODE_BOUNDS, lambda: [r for r in errors(reference) if r.kind == "decode"])
    fitted |= fit(MEMORY_BOUNDS, lambda: [r for r in errors(reference) if r.kind == "memory"])
    shown = {n: float(f"{v:.4g}") for n, v in fitted.items()}
    after = report("after the refit " + json.dumps(shown), errors(reference))
    if args.json:
        print(json.dumps({"table": str(args.table), "current": current, "fitted": shown, "before": before, "after": after}))


if __name__ == "__main__":
    main()
