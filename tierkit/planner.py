"""Capacity planning: memory fit, TP/PP, users and expected decode tokens/second.

Every factor is a named constant with its source. The figures here feed spec validation (does
the model fit?), `tierkit plan`, and the smoke gate (what tokens/second the tier promised).

Two servers or more come in two shapes: `replicas` (each server serves a full copy behind a load
balancer: the failover tier) and `split` (one copy spread over the servers, a pipeline stage per
server and tensor parallelism inside each: the multi-server tier).

A server's GPUs are laid out as engines (`Layout`): `data_parallel` engines of TP x PP GPUs each
(vLLM's --data-parallel-size in one `vllm serve`). One engine over all GPUs gives the fastest
single stream and pools the KV cache; several engines each decode their own streams without
an all-reduce between them. `recommended_layout` picks between them (docs/planner-fit.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tierkit import catalog

GIB = 1024**3
GB = 1e9

Shape = Literal["replicas", "split"]
SHAPES: tuple[Shape, ...] = ("replicas", "split")
LayoutKind = Literal["tp", "dp"]

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

# Several data-parallel engines each hold a copy of the weights, so together they keep less KV
# cache than one engine over the same GPUs. tierkit recommends them only when they still carry at
# least this share of one engine's users at the context (tierkit's choice; docs/planner-fit.md).
DP_MIN_USER_SHARE = 0.5

# A streamed answer reads comfortably at about 15 tok/s per user; batched decode shares the
# bandwidth, so a replica carries only as many users as still get that speed.
USER_TOK_S = 15.0

# A full-context prompt's activations (context x hidden size x 2 bytes) cross each pipeline hop
# between servers during prefill; tierkit sizes the link so that this adds at most 0.1 s to the
# time to first token (tierkit's target).
PROMPT_HOP_BUDGET_S = 0.1
# The published tier comparison tierkit follows (docs/planner.md, "The published tier table":
# gigagpu.com's "Single vs Multi-GPU vs Multi-Server"): "25 Gbps Ethernet being the minimum for
# cross-server tensor parallelism". The planner's split notes and the network gate's default floor
# (tierkit/inventory.py) both use it.
CROSS_SERVER_TP_MIN_GBPS = 25.0

KV_DTYPE_BYTES = 2.0  # FP16/BF16 KV cache (vLLM's default kv-cache-dtype "auto")
ACTIVATION_BYTES = 2.0  # BF16 activations between pipeline stages
# Always passed to vLLM as --gpu-memory-utilization (its own default is 0.92 in vLLM 0.32.0):
# docs/planner.md#gpu-memory-utilization
DEFAULT_UTILIZATION = 0.9
# The context tierkit sizes for when none is given: 8k, or less where the model is shorter.
DEFAULT_CONTEXT = 8192
GPU_COUNTS = (1, 2, 4, 8)  # GPU sets tierkit recommends per server


class Layout(BaseModel):
    """How a server's GPUs serve: `data_parallel` engines of TP x PP GPUs each. A split runs one
    engine over all servers (its PP counts every server's stages) and DP is 1."""

    model_config = ConfigDict(frozen=True)

    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int = 1

    @property
    def kind(self) -> LayoutKind:
        """`dp` with several engines per server, `tp` with one."""
        return "dp" if self.data_parallel > 1 else "tp"

    @property
    def label(self) -> str:
        return f"TP={self.tensor_parallel} PP={self.pipeline_parallel} DP={self.data_parallel}"


class LayoutFigures(BaseModel):
    """One layout's figures for the whole deployment (every engine on every server)."""

    model_config = ConfigDict(frozen=True)

    layout: LayoutKind
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    engines: int
    fits: bool
    single_stream_tok_s: float  # one stream on one engine
    expected_tok_s: float  # one stream on every engine at once: single_stream_tok_s x engines
    aggregate_tok_s: float  # every engine carrying max_users at the full context
    max_users: int
    kv_cache_gib: float


class Plan(BaseModel):
    """A sized deployment. `to_json()` emits the fixed keys scripts rely on."""

    model_config = ConfigDict(frozen=True)

    fits: bool
    tier: str
    shape: Shape
    servers: int
    gpus_per_server: int
    layout: LayoutKind
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    engines: int
    weights_gib: float
    kv_cache_gib: float
    max_users: int
    expected_tok_s: float
    single_stream_tok_s: float
    aggregate_tok_s: float
    max_fp16_params_b: float
    network_gbps: float
    alternative: LayoutFigures | None
    notes: list[str]
    model: str
    quantization: str
    gpu: str
    context: int

    def to_json(self) -> dict[str, object]:
        keys = ("fits", "tier", "shape", "servers", "gpus_per_server", "layout", "tensor_parallel",
                "pipeline_parallel", "data_parallel", "engines", "weights_gib", "kv_cache_gib", "max_users",
                "expected_tok_s", "single_stream_tok_s", "aggregate_tok_s", "max_fp16_params_b", "notes")
        out: dict[str, object] = {k: getattr(self, k) for k in keys}
        out["alternative"] = self.alternative.model_dump() if self.alternative else None
        return out


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


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def engine_layout(gpu: catalog.Gpu, model: catalog.Model, gpus: int, data_parallel: int = 1) -> Layout:
    """`data_parallel` engines over a server's `gpus`, each split as `default_parallelism` splits its share."""
    tp, pp = default_parallelism(gpu, model, gpus // data_parallel)
    return Layout(tensor_parallel=tp, pipeline_parallel=pp, data_parallel=data_parallel)


def engine_fits(
    model: catalog.Model, quant: str, gpu: catalog.Gpu, layout: Layout, context: int, utilization: float
) -> bool:
    """Whether one engine of the layout holds the weights and a sequence at `context`."""
    kv = kv_cache_gib(model, quant, gpu, layout.tensor_parallel, layout.pipeline_parallel, utilization)
    return kv >= model.kv_bytes_per_token(KV_DTYPE_BYTES) * context / GIB


def most_engines(
    model: catalog.Model, quant: str, gpu: catalog.Gpu, gpus: int, context: int, utilization: float = DEFAULT_UTILIZATION
) -> Layout:
    """The most engines a server's GPUs run where each holds the model at `context` (one when only all do)."""
    for dp in reversed(divisors(gpus)):
        layout = engine_layout(gpu, model, gpus, dp)
        if dp == 1 or engine_fits(model, quant, gpu, layout, context, utilization):
            return layout
    raise AssertionError("unreachable: dp == 1 returns")


def recommended_layout(
    model: catalog.Model, quant: str, gpu: catalog.Gpu, gpus: int, context: int, utilization: float = DEFAULT_UTILIZATION
) -> Layout:
    """One engine over the server's GPUs, unless its parallelism pays without speeding a stream up
    as NVLink does: TP whose all-reduce crosses PCIe (TP_SYNC_PCIE_S_PER_LAYER per layer per token),
    or pipeline stages (a stream visits them in turn). Then, when smaller engines hold the model,
    keep their own TP on NVLink and together still carry DP_MIN_USER_SHARE of one engine's users,
    as many engines as hold it (vLLM's data parallelism)."""
    one = engine_layout(gpu, model, gpus)
    many = most_engines(model, quant, gpu, gpus, context, utilization)
    pays = one.pipeline_parallel > 1 or (one.tensor_parallel > 1 and not nvlinked(gpu, one.tensor_parallel))
    linked = many.tensor_parallel == 1 or nvlinked(gpu, many.tensor_parallel)
    if many.data_parallel == 1 or not (pays and linked):
        return one

    def users(layout: Layout) -> int:
        return _engine(model, quant, gpu, layout, context, 0, utilization).users * layout.data_parallel

    return many if users(many) >= DP_MIN_USER_SHARE * users(one) else one


def _layout(
    model: catalog.Model, quant: str, gpu: catalog.Gpu, gpus_per_server: int, servers: int, shape: Shape,
    context: int, utilization: float, tensor_parallel: int | None, pipeline_parallel: int | None,
    data_parallel: int | None,
) -> Layout:
    """The layout asked for; the recommended one when nothing is asked. A split is one engine over
    all servers: TP and PP per server, PP times the servers (a stage or stages per server)."""
    if shape == "split":
        if (data_parallel or 1) != 1:
            raise ValueError("a split runs one engine over all its servers: data_parallel must be 1")
        if tensor_parallel is None and pipeline_parallel is None:
            tp, pp = default_parallelism(gpu, model, gpus_per_server)
        else:
            pp = pipeline_parallel or 1
            tp = tensor_parallel or max(1, gpus_per_server // pp)
        return Layout(tensor_parallel=tp, pipeline_parallel=pp * servers if tp * pp == gpus_per_server else pp)
    if tensor_parallel is None and pipeline_parallel is None:
        if data_parallel is None:
            return recommended_layout(model, quant, gpu, gpus_per_server, context, utilization)
        return engine_layout(gpu, model, gpus_per_server, data_parallel)
    pp, dp = pipeline_parallel or 1, data_parallel or 1
    tp = tensor_parallel or max(1, gpus_per_server // (pp * dp))
    return Layout(tensor_parallel=tp, pipeline_parallel=pp, data_parallel=dp)


@dataclass(frozen=True)
class _Engine:
    """One engine sized: its KV cache, single-stream speed, users and decode rate carrying them."""

    kv_gib: float
    kv_seq_gib: float
    single: float
    by_memory: int
    by_speed: int
    aggregate: float

    @property
    def fits(self) -> bool:
        return self.kv_gib >= self.kv_seq_gib

    @property
    def users(self) -> int:
        return min(self.by_memory, self.by_speed) if self.fits else 0


def _engine(
    model: catalog.Model, quant: str, gpu: catalog.Gpu, layout: Layout, context: int, hops: int, utilization: float
) -> _Engine:
    tp, pp = layout.tensor_parallel, layout.pipeline_parallel
    kv = max(0.0, kv_cache_gib(model, quant, gpu, tp, pp, utilization))
    kv_seq = model.kv_bytes_per_token(KV_DTYPE_BYTES) * context / GIB
    by_memory = math.floor(kv / kv_seq) if kv_seq else 0
    by_speed = batched_users(model, quant, gpu, tp, pp, context, hops)
    users = min(by_memory, by_speed) if kv >= kv_seq else 0
    return _Engine(
        kv_gib=kv, kv_seq_gib=kv_seq, single=decode_tok_s(model, quant, gpu, tp, pp, context // 2, hops),
        by_memory=by_memory, by_speed=by_speed, aggregate=batch_tok_s(model, quant, gpu, tp, pp, context, users, hops),
    )


def _figures(layout: Layout, engine: _Engine, engines: int, users: int | None) -> LayoutFigures:
    max_users = engine.users * engines
    return LayoutFigures(
        layout=layout.kind, tensor_parallel=layout.tensor_parallel, pipeline_parallel=layout.pipeline_parallel,
        data_parallel=layout.data_parallel, engines=engines, fits=engine.fits and not (users and max_users < users),
        single_stream_tok_s=round(engine.single, 1), expected_tok_s=round(engine.single * engines, 1),
        aggregate_tok_s=round(engine.aggregate * engines, 1), max_users=max_users,
        kv_cache_gib=round(engine.kv_gib * engines, 2),
    )


def _alternative(layout: Layout, one: Layout, many: Layout, recommended: Layout) -> Layout | None:
    """The layout to show beside the one sized: the recommendation when this is not it, else the
    other kind (one engine beside several, several beside one) when the server runs it."""
    for candidate in (recommended, one if layout.data_parallel > 1 else many):
        if candidate != layout:
            return candidate
    return None


def _layout_note(gpu: catalog.Gpu, chosen: LayoutFigures, other: LayoutFigures, context: int) -> str:
    """Why several engines were sized instead of one, and what one engine would give instead."""
    share = chosen.tensor_parallel * chosen.pipeline_parallel
    why = (f"one TP={other.tensor_parallel} engine would all-reduce every layer over PCIe ({gpu.key} has no NVLink "
           f"across them), which the spec allows only with allow_pcie_tensor_parallel"
           if other.pipeline_parallel == 1 else f"one engine would be a {other.pipeline_parallel}-stage pipeline")
    return (
        f"{chosen.data_parallel} engines of {share} GPU{'s' if share > 1 else ''} per server (vLLM --data-parallel-size "
        f"{chosen.data_parallel}), {chosen.single_stream_tok_s:.0f} tok/s each: {why}; that engine decodes one stream "
        f"faster ({other.single_stream_tok_s:.0f} tok/s) and pools its KV cache ({other.max_users} vs {chosen.max_users} "
        f"users, {other.aggregate_tok_s:.0f} vs {chosen.aggregate_tok_s:.0f} tok/s at full load at {context} tokens); "
        f"serving.data_parallel: 1 (plan --data-parallel 1) sizes it"
    )


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
    data_parallel: int | None = None,
) -> Plan:
    """Size the deployment: a full replica per server (`replicas`), or one replica over all (`split`).

    Each replica runs `data_parallel` engines of TP x PP GPUs; with no layout given, the
    recommended one (`recommended_layout`), or the other kind when only it carries `users`.
    """
    context = context or default_context(model)
    shape = shape if servers > 1 else "replicas"  # one server is one replica
    split = shape == "split"
    replicas = 1 if split else servers
    hops = servers - 1 if split else 0
    layout = _layout(model, quant, gpu, gpus_per_server, servers, shape, context, utilization,
                     tensor_parallel, pipeline_parallel, data_parallel)
    alternative = None
    if not split:
        one = engine_layout(gpu, model, gpus_per_server)
        many = most_engines(model, quant, gpu, gpus_per_server, context, utilization)
        recommended = recommended_layout(model, quant, gpu, gpus_per_server, context, utilization)
        alternative = _alternative(layout, one, many, recommended)

    def sized(lay: Layout) -> tuple[_Engine, LayoutFigures]:
        engine = _engine(model, quant, gpu, lay, context, hops, utilization)
        return engine, _figures(lay, engine, lay.data_parallel * replicas, users)

    engine, chosen = sized(layout)
    other = sized(alternative)[1] if alternative is not None else None
    asked = tensor_parallel is not None or pipeline_parallel is not None or data_parallel is not None
    if not asked and other is not None and alternative is not None and not chosen.fits and other.fits:
        layout, alternative = alternative, layout  # only the other layout carries the users asked for
        engine, chosen = sized(layout)
        other = sized(alternative)[1]

    tp, pp, n = layout.tensor_parallel, layout.pipeline_parallel, layout.tensor_parallel * layout.pipeline_parallel
    notes: list[str] = []
    w_gib = weights_bytes(model, quant) / GIB
    usable = gpu.vram_gib * utilization
    if not engine.fits:
        notes.append(
            f"needs {w_gib / n + per_gpu_overhead_gib(n) + engine.kv_seq_gib / n:.1f} GiB per GPU, has {usable:.1f} "
            f"({utilization:.0%} of {gpu.vram_gib:.1f})"
        )
    elif users and chosen.max_users < users:
        notes.append(f"carries {chosen.max_users} users at {context} tokens of context, {users} asked for")
    if engine.fits and layout.data_parallel > 1 and other is not None and other.data_parallel == 1:
        notes.append(_layout_note(gpu, chosen, other, context))
    if tp > 1 and gpu.nvlink == "none":
        notes.append(
            f"{gpu.key} has no NVLink: TP={tp} runs over PCIe (spec: allow_pcie_tensor_parallel: true); "
            f"pipeline_parallel={tp} is the alternative, at about one GPU's single-stream speed"
            + (f", and data_parallel={other.data_parallel} runs {other.data_parallel} engines that each hold the model"
               if other is not None and other.data_parallel > 1 else "")
        )
    elif tp > 2 and gpu.nvlink == "bridge":
        notes.append(f"{gpu.key} bridges GPUs in pairs only: TP={tp} crosses PCIe between pairs")
    if split:
        notes.append(
            f"one copy split over {servers} servers (PP={pp}, TP={tp} inside each); each hop between servers "
            f"needs about {split_network_gbps(model, context):.0f} Gbit/s for prompts of {context} tokens "
            f"(tensor parallelism across servers would need {CROSS_SERVER_TP_MIN_GBPS:.0f} Gbps or more)"
        )
    if engine.fits and engine.users == 0:
        notes.append(
            f"single-stream decode is {engine.single:.1f} tok/s, under the {USER_TOK_S:.0f} tok/s a user reads at: "
            f"no user gets that speed; more GPUs per server or a smaller quantization speed it up"
        )
    elif engine.fits:
        notes.append(
            f"users limited by {'KV cache' if engine.by_memory <= engine.by_speed else f'{USER_TOK_S:.0f} tok/s per user'} "
            f"at {context} tokens of context"
        )
    return Plan(
        fits=chosen.fits,
        tier=tier_for(servers, gpus_per_server, shape),
        shape=shape,
        servers=servers,
        gpus_per_server=gpus_per_server,
        layout=chosen.layout,
        tensor_parallel=tp,
        pipeline_parallel=pp,
        data_parallel=chosen.data_parallel,
        engines=chosen.engines,
        weights_gib=round(w_gib, 2),
        kv_cache_gib=chosen.kv_cache_gib,
        max_users=chosen.max_users,
        expected_tok_s=chosen.expected_tok_s,
        single_stream_tok_s=chosen.single_stream_tok_s,
        aggregate_tok_s=chosen.aggregate_tok_s,
        max_fp16_params_b=round(max_fp16_params_b(gpu, gpus_per_server * (servers if split else 1), utilization), 1),
        network_gbps=round(split_network_gbps(model, context), 1) if split else 0.0,
        alternative=other,
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
