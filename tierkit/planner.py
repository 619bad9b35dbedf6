"""Capacity planning: memory fit, TP/PP, users and expected decode tokens/second.

Every factor is a named constant with its source. The figures here feed spec validation (does
the model fit?), `tierkit plan`, and the smoke gate (what tokens/second the tier promised).

Two servers or more come in two shapes: `replicas` (each server serves a full copy behind a load
balancer: the failover tier) and `split` (one copy spread over the servers, a pipeline stage per
server and tensor parallelism inside each: the multi-server tier).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tierkit import catalog

GIB = 1024**3
GB = 1e9

Shape = Literal["replicas", "split"]
SHAPES: tuple[Shape, ...] = ("replicas", "split")

# Decode time per token, single stream (a memory-bound read of every weight, plus fixed costs):
#   TOKEN_OVERHEAD_S + TP sync per layer x layers (when TP > 1) + PIPELINE_HOP_S per stage boundary
#   + (weight bytes + KV bytes of the context so far) / (DECODE_EFFICIENCY x bandwidth x TP)
# DECODE_EFFICIENCY, TOKEN_OVERHEAD_S and the TP sync costs are fitted by bench/planner_fit.py to
# the published single-stream figures in tests/unit/data/planner_reference.yaml (docs/planner-fit.md
# has the rows, their sources and the error on each).
DECODE_EFFICIENCY = 0.903  # share of the datasheet bandwidth a decode step reaches (fit)
TOKEN_OVERHEAD_S = 0.00317  # per token: scheduling, sampling, kernel launches (fit; small models show it)
TP_SYNC_S_PER_LAYER = 0.0000464  # per layer per token at TP > 1: the two all-reduces over NVLink (fit)
TP_SYNC_PCIE_S_PER_LAYER = 0.0000977  # the same when the TP group talks over PCIe (fit, PCIe rows)

# A pipeline stage boundary moves one token's activations between GPUs (inside a server) or across
# the network (between servers): tierkit's assumption, as the reference table has no PP row.
PIPELINE_HOP_S = 0.0002
NETWORK_HOP_S = 0.0005

# Per-GPU memory vLLM needs besides weights and KV cache inside --gpu-memory-utilization (non-torch
# memory such as the CUDA context and NCCL buffers, and the activation peak of its profiling run),
# fitted to vLLM's start-up memory lines in tests/unit/data/planner_reference.yaml; a replica over
# several GPUs needs MULTI_GPU_OVERHEAD_GIB more on each (NCCL and custom all-reduce buffers).
RUNTIME_OVERHEAD_GIB = 3.43
MULTI_GPU_OVERHEAD_GIB = 1.09

# "Largest FP16 model" keeps room for a minimal KV cache on every GPU.
MIN_KV_RESERVE_GIB = 4.0

# A streamed answer reads comfortably at about 15 tok/s per user; batched decode shares the
# bandwidth, so a replica carries only as many users as still get that speed.
USER_TOK_S = 15.0

# A full-context prompt's activations (context x hidden size x 2 bytes) cross each pipeline hop
# between servers during prefill; tierkit sizes the link so that this adds at most 0.1 s to the
# time to first token (tierkit's target).
PROMPT_HOP_BUDGET_S = 0.1
# The published tier comparison tierkit follows (docs/planner.md): "25 Gbps Ethernet being the
# minimum for cross-server tensor parallelism".
CROSS_SERVER_TP_MIN_GBPS = 25.0

KV_DTYPE_BYTES = 2.0  # FP16/BF16 KV cache (vLLM's default kv-cache-dtype "auto")
ACTIVATION_BYTES = 2.0  # BF16 activations between pipeline stages
# Always passed to vLLM as --gpu-memory-utilization (its own default is 0.92 in vLLM 0.32.0):
# docs/planner.md#gpu-memory-utilization
DEFAULT_UTILIZATION = 0.9
# The context tierkit sizes for when none is given: 8k, or less where the model is shorter.
DEFAULT_CONTEXT = 8192
GPU_COUNTS = (1, 2, 4, 8)  # GPU sets tierkit recommends per server


class Plan(BaseModel):
    """A sized deployment. `to_json()` emits the fixed keys scripts rely on."""

    model_config = ConfigDict(frozen=True)

    fits: bool
    tier: str
    shape: Shape
    servers: int
    gpus_per_server: int
    tensor_parallel: int
    pipeline_parallel: int
    weights_gib: float
    kv_cache_gib: float
    max_users: int
    expected_tok_s: float
    single_stream_tok_s: float
    aggregate_tok_s: float
    max_fp16_params_b: float
    network_gbps: float
    notes: list[str]
    model: str
    quantization: str
    gpu: str
    context: int

    def to_json(self) -> dict[str, object]:
        keys = ("fits", "tier", "shape", "servers", "gpus_per_server", "tensor_parallel", "pipeline_parallel",
                "weights_gib", "kv_cache_gib", "max_users", "expected_tok_s", "max_fp16_params_b", "notes")
        return {k: getattr(self, k) for k in keys}


def default_context(model: catalog.Model) -> int:
    """Tokens of context per user when none is given: DEFAULT_CONTEXT, capped by the model's."""
    return min(model.default_context, DEFAULT_CONTEXT)


def tier_for(servers: int, gpus_per_server: int, shape: Shape = "replicas") -> str:
    """The tier that deploys this shape: failover (replicas) or multi-server (split) on 2+ servers."""
    if servers >= 2:
        return "failover" if shape == "replicas" else "multi-server"
    return "single-gpu" if gpus_per_server == 1 else "multi-gpu"


def weights_bytes(model: catalog.Model, quant: str) -> float:
    return model.params_b * 1e9 * catalog.BYTES_PER_PARAM[quant]


def per_gpu_overhead_gib(gpus_in_replica: int) -> float:
    return RUNTIME_OVERHEAD_GIB + (MULTI_GPU_OVERHEAD_GIB if gpus_in_replica > 1 else 0.0)


def default_parallelism(gpu: catalog.Gpu, model: catalog.Model, gpus: int) -> tuple[int, int]:
    """TP over every GPU when the heads divide; otherwise the largest dividing TP, rest as PP."""
    for tp in range(gpus, 0, -1):
        if gpus % tp == 0 and model.attention_heads % tp == 0 and model.kv_heads % tp == 0:
            return tp, gpus // tp
    return 1, gpus


def nvlinked(gpu: catalog.Gpu, tp: int) -> bool:
    """Whether a TP group of `tp` GPUs talks over NVLink: NVSwitch, or a bridged pair."""
    return gpu.nvlink == "switch" or (gpu.nvlink == "bridge" and tp <= 2)


def fixed_token_s(
    model: catalog.Model, gpu: catalog.Gpu, tp: int, pp: int, network_hops: int = 0, nvlink: bool | None = None
) -> float:
    """The per-token time that does not shrink with bandwidth: overhead, all-reduces, stage hops.

    `nvlink` overrides the catalog's answer for a measured setup (bridges left off, say).
    """
    linked = nvlinked(gpu, tp) if nvlink is None else nvlink
    sync = (TP_SYNC_S_PER_LAYER if linked else TP_SYNC_PCIE_S_PER_LAYER) * model.layers if tp > 1 else 0.0
    return TOKEN_OVERHEAD_S + sync + PIPELINE_HOP_S * (pp - 1 - network_hops) + NETWORK_HOP_S * network_hops


def decode_tok_s(
    model: catalog.Model, quant: str, gpu: catalog.Gpu, tp: int, pp: int, context: int, network_hops: int = 0,
    nvlink: bool | None = None,
) -> float:
    """Single-stream decode tokens/second of one replica (TP x PP GPUs) at `context` tokens so far.

    The stages of a pipeline take turns on a single stream, so PP adds hops, not bandwidth.
    """
    read = weights_bytes(model, quant) + model.kv_bytes_per_token(KV_DTYPE_BYTES) * context
    fixed = fixed_token_s(model, gpu, tp, pp, network_hops, nvlink)
    return 1.0 / (fixed + read / (DECODE_EFFICIENCY * gpu.bandwidth_gbs * GB * tp))


def batched_users(
    model: catalog.Model, quant: str, gpu: catalog.Gpu, tp: int, pp: int, context: int, network_hops: int = 0
) -> int:
    """Users one replica decodes at once while each still gets USER_TOK_S, at full context.

    A step reads the weights once for the whole batch and each user's KV cache; a pipeline keeps PP
    micro-batches in flight, one per stage, so the KV reads spread over PP x TP GPUs.
    """
    bw = DECODE_EFFICIENCY * gpu.bandwidth_gbs * GB * tp
    budget = 1.0 / USER_TOK_S - fixed_token_s(model, gpu, tp, pp, network_hops) - weights_bytes(model, quant) / bw
    per_user = model.kv_bytes_per_token(KV_DTYPE_BYTES) * context / (bw * pp)
    return max(0, math.floor(budget / per_user))


def batch_tok_s(
    model: catalog.Model, quant: str, gpu: catalog.Gpu, tp: int, pp: int, context: int, users: int, network_hops: int = 0
) -> float:
    """Aggregate decode tokens/second of one replica with `users` streams at full context."""
    bw = DECODE_EFFICIENCY * gpu.bandwidth_gbs * GB * tp
    kv_seq = model.kv_bytes_per_token(KV_DTYPE_BYTES) * context
    interval = fixed_token_s(model, gpu, tp, pp, network_hops) + (weights_bytes(model, quant) + users * kv_seq / pp) / bw
    return users / interval


def kv_cache_gib(model: catalog.Model, quant: str, gpu: catalog.Gpu, tp: int, pp: int, utilization: float) -> float:
    """KV cache the replica's GPUs hold together (negative when the weights do not fit)."""
    n = tp * pp
    per_gpu = gpu.vram_gib * utilization - weights_bytes(model, quant) / GIB / n - per_gpu_overhead_gib(n)
    return per_gpu * n


def max_fp16_params_b(gpu: catalog.Gpu, gpus_total: int, utilization: float = DEFAULT_UTILIZATION) -> float:
    """The largest FP16 model a GPU set holds, with a minimal KV cache on each GPU."""
    per_gpu = gpu.vram_gib * utilization - per_gpu_overhead_gib(gpus_total) - MIN_KV_RESERVE_GIB
    return max(0.0, per_gpu * gpus_total * GIB / catalog.BYTES_PER_PARAM["fp16"] / 1e9)


def split_network_gbps(model: catalog.Model, context: int) -> float:
    """The link rate a pipeline hop between servers needs: a full prompt's activations in the budget."""
    return context * model.hidden_size * ACTIVATION_BYTES * 8 / PROMPT_HOP_BUDGET_S / GB


def _parallelism(
    gpu: catalog.Gpu, model: catalog.Model, gpus_per_server: int, servers: int, shape: Shape,
    tensor_parallel: int | None, pipeline_parallel: int | None,
) -> tuple[int, int]:
    """TP and PP of one replica: per server for replicas; across all servers for a split."""
    if tensor_parallel is None and pipeline_parallel is None:
        tp, pp = default_parallelism(gpu, model, gpus_per_server)
    else:
        pp = pipeline_parallel or 1
        tp = tensor_parallel or max(1, gpus_per_server // pp)
    if shape == "split" and tp * pp == gpus_per_server:
        pp *= servers  # a stage (or stages) per server; TP stays inside each server
    return tp, pp


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
    shape: Shape = "replicas",
) -> Plan:
    """Size the deployment: a full replica per server (`replicas`), or one replica over all (`split`)."""
    context = context or default_context(model)
    shape = shape if servers > 1 else "replicas"  # one server is one replica
    split = shape == "split"
    tp, pp = _parallelism(gpu, model, gpus_per_server, servers, shape, tensor_parallel, pipeline_parallel)
    n = tp * pp
    replicas = 1 if split else servers
    hops = servers - 1 if split else 0
    notes: list[str] = []

    w_gib = weights_bytes(model, quant) / GIB
    usable = gpu.vram_gib * utilization
    overhead = per_gpu_overhead_gib(n)
    kv_total = max(0.0, kv_cache_gib(model, quant, gpu, tp, pp, utilization))
    kv_seq_gib = model.kv_bytes_per_token(KV_DTYPE_BYTES) * context / GIB
    fits = kv_total >= kv_seq_gib
    if not fits:
        notes.append(
            f"needs {w_gib / n + overhead + kv_seq_gib / n:.1f} GiB per GPU, has {usable:.1f} "
            f"({utilization:.0%} of {gpu.vram_gib:.1f})"
        )

    single = decode_tok_s(model, quant, gpu, tp, pp, context // 2, hops)
    by_memory = math.floor(kv_total / kv_seq_gib) if kv_seq_gib else 0
    by_speed = batched_users(model, quant, gpu, tp, pp, context, hops)
    users_per_replica = min(by_memory, by_speed) if fits else 0
    max_users = users_per_replica * replicas
    aggregate = batch_tok_s(model, quant, gpu, tp, pp, context, users_per_replica, hops) * replicas
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
    if split:
        notes.append(
            f"one copy split over {servers} servers (PP={pp}, TP={tp} inside each); each hop between servers "
            f"needs about {split_network_gbps(model, context):.0f} Gbit/s for prompts of {context} tokens "
            f"(tensor parallelism across servers would need {CROSS_SERVER_TP_MIN_GBPS:.0f} Gbps or more)"
        )
    if fits and users_per_replica == 0:
        notes.append(
            f"single-stream decode is {single:.1f} tok/s, under the {USER_TOK_S:.0f} tok/s a user reads at: "
            f"no user gets that speed; more GPUs per server or a smaller quantization speed it up"
        )
    elif fits:
        notes.append(
            f"users limited by {'KV cache' if by_memory <= by_speed else f'{USER_TOK_S:.0f} tok/s per user'} "
            f"at {context} tokens of context"
        )
    return Plan(
        fits=fits,
        tier=tier_for(servers, gpus_per_server, shape),
        shape=shape,
        servers=servers,
        gpus_per_server=gpus_per_server,
        tensor_parallel=tp,
        pipeline_parallel=pp,
        weights_gib=round(w_gib, 2),
        kv_cache_gib=round(kv_total * replicas, 2),
        max_users=max_users,
        expected_tok_s=round(single * replicas, 1),
        single_stream_tok_s=round(single, 1),
        aggregate_tok_s=round(aggregate, 1),
        max_fp16_params_b=round(max_fp16_params_b(gpu, n, utilization), 1),
        network_gbps=round(split_network_gbps(model, context), 1) if split else 0.0,
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
    shape: Shape = "replicas",
) -> Plan:
    """The smallest GPU count per server (1, 2, 4, 8) that fits; the 8-GPU plan if none does."""
    candidates = [plan(model, quant, gpu, n, servers, context, users, shape=shape) for n in GPU_COUNTS]
    for p in candidates:
        if p.fits:
            return p
    last = candidates[-1]
    fix = smallest_fix(model, quant, gpu, GPU_COUNTS[-1], last.context, DEFAULT_UTILIZATION, servers, shape)
    return last.model_copy(update={"notes": [*last.notes, fix]})


def recommended_shape(replicas: Plan, split: Plan) -> Shape:
    """Replicas (the failover tier) when a server holds the model; the split when only all of them do."""
    return "split" if split.fits and not replicas.fits else "replicas"


def smallest_fix(
    model: catalog.Model, quant: str, gpu: catalog.Gpu, gpus: int, context: int, utilization: float,
    servers: int = 1, shape: Shape = "replicas",
) -> str:
    """What would make the model fit: more GPUs of this kind, a split, or a smaller quantization."""
    fixes = []
    for n in GPU_COUNTS:
        if n > gpus and plan(model, quant, gpu, n, servers, context, utilization=utilization, shape=shape).fits:
            fixes.append(f"{n}x {gpu.key}")
            break
    if servers > 1 and shape == "replicas" and plan(
        model, quant, gpu, gpus, servers, context, utilization=utilization, shape="split"
    ).fits:
        fixes.append(f"one copy split over the {servers} servers (the multi-server tier)")
    for q in ("fp8", "int8", "awq"):
        if catalog.BYTES_PER_PARAM[q] >= catalog.BYTES_PER_PARAM[quant]:
            continue
        if gpu.compute_capability < catalog.MIN_COMPUTE_CAPABILITY.get(q, 0):
            continue
        if plan(model, q, gpu, gpus, servers, context, utilization=utilization, shape=shape).fits:
            fixes.append(f"quantization {q}")
            break
    if not fixes:
        return f"does not fit {GPU_COUNTS[-1]}x {gpu.key} at any quantization; choose a larger GPU or a shorter max_context"
    return "needs " + " or ".join(fixes)


def shape_for_tier(tier: str) -> Shape:
    """The multi-server tier splits one copy over its servers; every other tier serves replicas."""
    return "split" if tier == "multi-server" else "replicas"
