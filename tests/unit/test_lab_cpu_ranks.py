"""tierkit/lab/cpu_ranks.py: the spec's parallelism as vLLM's CPU build runs it in the lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierkit.lab.cpu_ranks import lab_ranks, largest_divisor
from tierkit.spec import load_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("stack", "cores", "tp", "pp", "binds"), [
    ("multi-gpu", 2, 2, 1, ("0|1",)),           # TP=4 simulated; two cores: TP=2, a rank per core
    ("multi-gpu", 8, 4, 1, ("0|1|2|3",)),       # enough cores: the spec's TP (the tiny model has 4 heads)
    ("multi-server", 2, 1, 2, ("0", "1")),      # a stage per host, each host's rank on its own core
    ("multi-server", 1, 1, 2, ("0", "0")),      # one core: both wrap onto it
    ("failover", 2, 1, 1, ("0", "1")),          # two replicas on two cores
    ("single-gpu", 2, 1, 1, ("0",)),
])
def test_one_rank_per_core(stack, cores, tp, pp, binds):
    ranks = lab_ranks(load_stack(stack, ROOT), cores)
    assert (ranks.tensor_parallel, ranks.pipeline_parallel, ranks.binds) == (tp, pp, binds)


def test_largest_divisor():
    assert largest_divisor(3, 4, 4) == 2 and largest_divisor(8, 12, 4) == 4 and largest_divisor(0, 7) == 1
