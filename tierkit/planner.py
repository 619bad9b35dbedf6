"""Capacity planning: memory fit, TP/PP, users and expected decode tokens/second.

Every factor is a named constant with its source. The figures here feed spec validation (does
the model fit?), `tierkit plan`, and the smoke gate (what tokens/second the tier promised).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

from tierkit import catalog

GIB = 1024**3
GB = 1e9

# Decode is memory-bound: single-stream tok/s ~= efficiency x bandwidth / weight bytes.
# Measured efficiency is 0.5-0.7 (DESIGN.md "Planner facts"); vLLM's fused kernels reach the top of
# that range, and the published tier table (35 tok/s for 70B Q4 on one RTX PRO 6000) implies 0.7+.
DECODE_EFFICIENCY = 0.7

# Marginal contribution of the k-th GPU in a tensor-parallel group. DESIGN.md: "NVLink overhead
# for a 2nd GPU under 5%; 3rd and 4th GPUs 8-12%". GPUs 5-8 are tierkit's assumption (a further
# step down: "larger TP is not always faster", DESIGN.md).
TP_MARGINAL_GAIN = (1.0, 0.95, 0.90, 0.90, 0.85, 0.85, 0.85, 0.85)

# Each extra pipeline stage adds a hop between GPUs per token; tierkit assumes 3% per stage.
PP_STAGE_OVERHEAD = 0.03

# Per-GPU memory vLLM needs besides weights and KV cache (CUDA context, activation peak of the
# profiling run, CUDA graphs): tierkit's allowance, 4 GiB, plus 2 GiB more for NCCL / custom
# all-reduce buffers when the replica spans GPUs.
RUNTIME_OVERHEAD_GIB = 4.0
MULTI_GPU_OVERHEAD_GIB = 2.0

# "Largest FP16 model" keeps room for a minimal KV cache on every GPU.
MIN_KV_RESERVE_GIB = 4.0

# A streamed answer reads comfortably at about 15 tok/s per user; batched decode shares the
# bandwidth, so a replica carries only as many users as still get that speed.
USER_TOK_S = 15.0

KV_DTYPE_BYTES = 2.0  # FP16/BF16 KV cache (vLLM's default kv-cache-dtype "auto")
DEFAULT_UTILIZATION = 0.9  # vLLM's --gpu-memory-utilization default (DESIGN.md)
# The context tierkit sizes for when none is given: 8k, or less where the model is shorter.
DEFAULT_CONTEXT = 8192
GPU_COUNTS = (1, 2, 4, 8)  # GPU sets tierkit recommends per server


class Plan(BaseModel):
    """A sized deployment. `to_json()` emits the fixed keys scripts rely on."""

    model_config = ConfigDict(frozen=True)

    fits: bool
    tier: str
    servers: int
    gpus_per_server: int
    tensor_parallel: int
    pipeline_parallel: int
    weights_gib: float
    kv_cache_gib: float
    max_users: int
    expected_tok_s: float
    single_stream_tok_s: float
    max_fp16_params_b: float
    notes: list[str]
    model: str
    quantization: str
    gpu: str
    context: int

    def to_json(self) -> dict[str, object]:
        keys = ("fits", "tier", "servers", "gpus_per_server", "tensor_parallel", "pipeline_parallel",
                "weights_gib", "kv_cache_gib", "max_users", "expected_tok_s", "max_fp16_params_b", "notes")
        return {k: getattr(self, k) for k in keys}


def default_context(model: catalog.Model) -> int:
    """Tokens of context per user when none is given: DEFAULT_CONTEXT, capped by the model's."""
    return min(model.default_context, DEFAULT_CONTEXT)


def tier_for(servers: int, gpus_per_server: int) -> str:
    if servers >= 2:
        return "failover"
    return "single-gpu" if gpus_per_server == 1 else "multi-gpu"


def weights_bytes(model: catalog.Model, quant: str) -> float:
    return model.params_b * 1e9 * catalog.BYTES_PER_PARAM[quant]


def per_gpu_overhead_gib(gpus_in_replica: int) -> float:
    return RUNTIME_OVERHEAD_GIB + (MULTI_GPU_OVERHEAD_GIB if gpus_in_replica > 1 else 0.0)


def tp_effective_gpus(tp: int) -> float:
    """Bandwidth-equivalent GPUs of a TP group: the sum of each GPU's marginal gain."""
    return sum(TP_MARGINAL_GAIN[: min(tp, len(TP_MARGINAL_GAIN))])


def default_parallelism(gpu: catalog.Gpu, model: catalog.Model, gpus: int) -> tuple[int, int]:
    """TP over every GPU when the heads divide; otherwise the largest dividing TP, rest as PP."""
    for tp in range(gpus, 0, -1):
        if gpus % tp == 0 and model.attention_heads % tp == 0 and model.kv_heads % tp == 0:
            return tp, gpus // tp
    return 1, gpus


def max_fp16_params_b(gpu: catalog.Gpu, gpus_total: int, utilization: float = DEFAULT_UTILIZATION) -> float:
    """The largest FP16 model a GPU set holds, with a minimal KV cache on each GPU."""
    per_gpu = gpu.vram_gib * utilization - per_gpu_overhead_gib(gpus_total) - MIN_KV_RESERVE_GIB
    return max(0.0, per_gpu * gpus_total * GIB / catalog.BYTES_PER_PARAM["fp16"] / 1e9)


def plan(
    model: catalog.Model,
    quant: str,
    gpu: catalog.Gpu,
    gpus_per_server: int,
    servers: int = 1,
    context: int | None = None,
    users: int | None = None,
    tensor_parallel: int | None = None,
    pipeline_parallel: int | None = None,
    utilization: float = DEFAULT_UTILIZATION,
) -> Plan:
    """Size one replica per server (the tiers serve a full copy of the model on each server)."""
    context = context or default_context(model)
    if tensor_parallel is None and pipeline_parallel is None:
        tp, pp = default_parallelism(gpu, model, gpus_per_server)
    else:
        pp = pipeline_parallel or 1
        tp = tensor_parallel or max(1, gpus_per_server // pp)
    n = tp * pp
    notes: list[str] = []

    w_bytes = weights_bytes(model, quant)
    w_gib = w_bytes / GIB
    usable = gpu.vram_gib * utilization
    overhead = per_gpu_overhead_gib(n)
    kv_per_gpu = usable - w_gib / n - overhead
    kv_token = model.kv_bytes_per_token(KV_DTYPE_BYTES)
    kv_seq_gib = kv_token * context / GIB
    kv_total = max(0.0, kv_per_gpu * n)
    fits = kv_total >= kv_seq_gib
    if not fits:
        notes.append(
            f"needs {w_gib / n + overhead + kv_seq_gib / n:.1f} GiB per GPU, has {usable:.1f} "
            f"({utilization:.0%} of {gpu.vram_gib:.1f})"
        )

    # Memory-bound decode: single stream reads all weights once per token.
    stage_factor = 1.0 - PP_STAGE_OVERHEAD * (pp - 1)
    replica_bw = gpu.bandwidth_gbs * GB * tp_effective_gpus(tp) * stage_factor
    single = DECODE_EFFICIENCY * replica_bw / w_bytes
    # Users per replica: KV capacity at this context, and batch size that keeps USER_TOK_S each.
    by_memory = math.floor(kv_total / kv_seq_gib) if kv_seq_gib else 0
    batched_bw = DECODE_EFFICIENCY * replica_bw * pp  # stages work on different batches at once
    by_speed = max(0, math.floor((batched_bw / USER_TOK_S - w_bytes) / (kv_token * context)))
    users_per_replica = min(by_memory, by_speed) if fits else 0
    max_users = users_per_replica * servers
    if fits and users and max_users < users:
        fits = False
        notes.append(f"carries {max_users} users at {context} tokens of context, {users} asked for")

    if tp > 1 and gpu.nvlink == "none":
        notes.append(
            f"{gpu.key} has no NVLink: TP={tp} runs over PCIe (spec: allow_pcie_tensor_parallel: true); "
            f"pipeline_parallel={tp} is the alternative, at about one GPU's single-stream speed"
        )
    elif tp > 2 and gpu.nvlink == "bridge":
        notes.append(f"{gpu.key} bridges GPUs in pairs only: TP={tp} crosses PCIe between pairs")
    if fits:
        notes.append(
            f"users limited by {'KV cache' if by_memory <= by_speed else f'{USER_TOK_S:.0f} tok/s per user'} "
            f"at {context} tokens of context"
        )
    return Plan(
        fits=fits,
        tier=tier_for(servers, gpus_per_server),
        servers=servers,
        gpus_per_server=gpus_per_server,
        tensor_parallel=tp,
        pipeline_parallel=pp,
        weights_gib=round(w_gib, 2),
        kv_cache_gib=round(kv_total * servers, 2),
        max_users=max_users,
        expected_tok_s=round(single * servers, 1),
        single_stream_tok_s=round(single, 1),
        max_fp16_params_b=round(max_fp16_params_b(gpu, gpus_per_server * servers, utilization), 1),
        notes=notes,
        model=model.key,
        quantization=quant,
        gpu=gpu.key,
        context=context,
    )


def recommend(
    model: catalog.Model,
    quant: str,
    gpu: catalog.Gpu,
    servers: int = 1,
    context: int | None = None,
    users: int | None = None,
) -> Plan:
    """The smallest GPU count per server (1, 2, 4, 8) that fits; the 8-GPU plan if none does."""
    candidates = [plan(model, quant, gpu, n, servers, context, users) for n in GPU_COUNTS]
    for p in candidates:
        if p.fits:
            return p
    last = candidates[-1]
    fix = smallest_fix(model, quant, gpu, GPU_COUNTS[-1], last.context, DEFAULT_UTILIZATION)
    return last.model_copy(update={"notes": [*last.notes, fix]})


def smallest_fix(
    model: catalog.Model, quant: str, gpu: catalog.Gpu, gpus: int, context: int, utilization: float
) -> str:
    """What would make the model fit: more GPUs of this kind, or a smaller quantization."""
    fixes = []
    for n in GPU_COUNTS:
        if n > gpus and plan(model, quant, gpu, n, 1, context, utilization=utilization).fits:
            fixes.append(f"{n}x {gpu.key}")
            break
    for q in ("fp8", "int8", "awq"):
        if catalog.BYTES_PER_PARAM[q] >= catalog.BYTES_PER_PARAM[quant]:
            continue
        if gpu.compute_capability < catalog.MIN_COMPUTE_CAPABILITY.get(q, 0):
            continue
        if plan(model, q, gpu, gpus, 1, context, utilization=utilization).fits:
            fixes.append(f"quantization {q}")
            break
    if not fixes:
        return f"does not fit {GPU_COUNTS[-1]}x {gpu.key} at any quantization; choose a larger GPU or a shorter max_context"
    return "needs " + " or ".join(fixes)
