"""The tier comparison for one model and GPU: single GPU, multi-GPU, replicas and split, side by side.

This is the published comparison's shape (docs/planner.md) computed for any catalog model and GPU:
per setup the layout the planner recommends (TP, PP and data-parallel engines), the largest FP16
model, single-stream, one-stream-per-engine and aggregate decode speed, users, the interconnect an
engine's traffic crosses, and, given a GPU-hour price, the cost per hour and per million
output tokens.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from tierkit import catalog, planner

SECONDS_PER_HOUR = 3600.0


class CompareRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    setup: str
    tier: str
    shape: planner.Shape
    fits: bool
    servers: int
    gpus_per_server: int
    layout: planner.LayoutKind
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    engines: int
    max_fp16_params_b: float
    single_stream_tok_s: float
    expected_tok_s: float
    aggregate_tok_s: float
    max_users: int
    interconnect: str
    network_gbps: float
    usd_per_hour: float | None
    usd_per_million_tokens: float | None


def interconnect(gpu: catalog.Gpu, plan: planner.Plan) -> str:
    """The links a token's work crosses: none (one GPU), NVLink, PCIe, and the network between servers."""
    if plan.tensor_parallel * plan.pipeline_parallel == 1:
        inside = "none"
    elif gpu.nvlink == "switch" or (gpu.nvlink == "bridge" and plan.tensor_parallel <= 2 and plan.pipeline_parallel == 1):
        inside = "NVLink"
    else:
        inside = "PCIe"
    if plan.servers > 1 and plan.shape == "split":
        return "network" if inside == "none" else f"{inside}+network"
    return inside


def row(setup: str, gpu: catalog.Gpu, plan: planner.Plan, gpu_hour_usd: float | None) -> CompareRow:
    per_hour = gpu_hour_usd * plan.servers * plan.gpus_per_server if gpu_hour_usd is not None else None
    per_million = None
    if per_hour is not None and plan.fits and plan.aggregate_tok_s > 0:
        per_million = round(per_hour / (plan.aggregate_tok_s * SECONDS_PER_HOUR) * 1e6, 3)
    return CompareRow(
        setup=setup,
        tier=plan.tier,
        shape=plan.shape,
        fits=plan.fits,
        servers=plan.servers,
        gpus_per_server=plan.gpus_per_server,
        layout=plan.layout,
        tensor_parallel=plan.tensor_parallel,
        pipeline_parallel=plan.pipeline_parallel,
        data_parallel=plan.data_parallel,
        engines=plan.engines,
        max_fp16_params_b=plan.max_fp16_params_b,
        single_stream_tok_s=plan.single_stream_tok_s if plan.fits else 0.0,
        expected_tok_s=plan.expected_tok_s if plan.fits else 0.0,
        aggregate_tok_s=plan.aggregate_tok_s if plan.fits else 0.0,
        max_users=plan.max_users,
        interconnect=interconnect(gpu, plan),
        network_gbps=plan.network_gbps,
        usd_per_hour=round(per_hour, 2) if per_hour is not None else None,
        usd_per_million_tokens=per_million,
    )


def compare(
    model: catalog.Model, quant: str, gpu: catalog.Gpu, gpus_per_server: int, servers: int, context: int,
    gpu_hour_usd: float | None = None,
) -> list[CompareRow]:
    """One GPU, `gpus_per_server` GPUs, and `servers` of them as replicas and as one split copy."""
    setups = (
        ("1 GPU", planner.plan(model, quant, gpu, 1, 1, context)),
        (f"{gpus_per_server} GPUs", planner.plan(model, quant, gpu, gpus_per_server, 1, context)),
        (f"{servers}x{gpus_per_server} replicas", planner.plan(model, quant, gpu, gpus_per_server, servers, context, shape="replicas")),
        (f"{servers}x{gpus_per_server} split", planner.plan(model, quant, gpu, gpus_per_server, servers, context, shape="split")),
    )
    return [row(setup, gpu, plan, gpu_hour_usd) for setup, plan in setups]
