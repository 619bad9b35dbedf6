"""The spec's parallelism as vLLM's CPU build runs it on lab hosts: one rank per core.

vLLM's CPU backend runs tensor and pipeline parallelism with gloo between its ranks (shared memory
inside a host, TCP across hosts) and binds each rank's OpenMP threads to the cores in
VLLM_CPU_OMP_THREADS_BIND ("0|1": rank 0 on core 0, rank 1 on core 1). Its automatic binding
gives each rank of a host a NUMA node of its own and keeps a core back for the scheduler, so TP=2
on a one-node, two-core machine fails, and two lab hosts (which share the machine's cores) would
both bind core 0. Lab hosts therefore get an explicit binding: global rank g on core g mod cores.
docs/multi-server.md has the sources.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tierkit.spec import TierSpec


@dataclass(frozen=True)
class LabRanks:
    """What vLLM runs in the lab for a spec: TP and PP, and each host's thread binding."""

    tensor_parallel: int
    pipeline_parallel: int
    binds: tuple[str, ...]  # VLLM_CPU_OMP_THREADS_BIND per host, in host order

    @property
    def ranks_per_host(self) -> int:
        return len(self.binds[0].split("|"))


def machine_cores() -> int:
    """Cores this machine lets tierkit use (lab hosts share them)."""
    return len(os.sched_getaffinity(0)) or 1


def largest_divisor(limit: int, *numbers: int) -> int:
    """The largest d <= limit dividing every number (1 at least)."""
    return next(d for d in range(max(1, limit), 0, -1) if all(n % d == 0 for n in numbers))


def lab_ranks(spec: TierSpec, cores: int | None = None) -> LabRanks:
    """TP within a host at most the cores (and dividing the heads); PP = servers on multi-server,
    else at most what the cores and the model's layers allow; a core per rank, wrapping around."""
    cores = cores or machine_cores()
    model = spec.model_info
    per_host_tp = spec.gpu.count if spec.tier == "multi-server" else spec.tensor_parallel
    tp = largest_divisor(min(per_host_tp, cores), model.attention_heads, model.kv_heads)
    if spec.tier == "multi-server":
        pp, hosts, stages_per_host = spec.server_count, spec.server_count, 1
    else:
        pp = max(1, min(spec.pipeline_parallel, cores // tp, model.layers))
        hosts, stages_per_host = spec.server_count, pp
    local = tp * stages_per_host
    binds = tuple("|".join(str((h * local + r) % cores) for r in range(local)) for h in range(hosts))
    return LabRanks(tensor_parallel=tp, pipeline_parallel=pp, binds=binds)
