"""`tierkit plan`: size a deployment before any server is touched."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tierkit import catalog, planner
from tierkit.commands.options import FileOpt
from tierkit.compare import CompareRow, compare
from tierkit.console import console, print_json
from tierkit.errors import TierkitError

QUANTS = list(catalog.BYTES_PER_PARAM)
DEFAULT_QUANT = "bf16"
DEFAULT_GPU = "rtx-pro-6000"
MAX_SERVERS = 8
MAX_PARAMS_B = 100_000  # billions: 100 T parameters, far beyond any checkpoint
COMPARE_GPUS = 4  # the published comparison's multi-GPU server
COMPARE_SERVERS = 2
COMPARE_WIDTH = 140  # the comparison's twelve columns unwrapped


def _model(model_key: str | None, params_b: float | None) -> catalog.Model:
    if (model_key is None) == (params_b is None):
        raise TierkitError("--model/--params-b: give exactly one; e.g. --model llama-3.3-70b or --params-b 70")
    if model_key is not None:
        return catalog.lookup_model(model_key, "--model")
    assert params_b is not None
    # A bare parameter count: borrow the shape of the catalog model closest in size.
    nearest = min((m for m in catalog.MODELS.values() if m.key != "tiny-llama"), key=lambda m: abs(m.params_b - params_b))
    return nearest.model_copy(update={"key": f"{params_b:g}b (shaped like {nearest.key})", "params_b": params_b})


def _positive(flag: str, value: float | None, example: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise TierkitError(f"{flag}: must be a finite number above 0, got {value:g}; e.g. {flag} {example}")


def layout_text(tp: int, pp: int, dp: int) -> str:
    return f"TP={tp} PP={pp} DP={dp}"


def render(plan: planner.Plan) -> None:
    """The plan as a two-column table and its notes."""
    table = Table(title=f"{plan.model} {plan.quantization} on {plan.gpu}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    shape = "" if plan.servers == 1 else f" ({'one copy split over them' if plan.shape == 'split' else 'a full replica on each'})"
    per_server = f", {plan.data_parallel} per server" if plan.data_parallel > 1 and plan.servers > 1 else ""
    flag = f" (vLLM --data-parallel-size {plan.data_parallel})" if plan.data_parallel > 1 else ""
    rows = [
        ("fits", "[green]yes[/]" if plan.fits else "[red]no[/]"),
        ("tier", plan.tier),
        ("servers x GPUs", f"{plan.servers} x {plan.gpus_per_server}{shape}"),
        ("layout", f"{layout_text(plan.tensor_parallel, plan.pipeline_parallel, plan.data_parallel)}: "
                   f"{plan.engines} engine{'s' if plan.engines > 1 else ''}{per_server}{flag}"),
        ("weights", f"{plan.weights_gib:.1f} GiB"),
        ("KV cache", f"{plan.kv_cache_gib:.1f} GiB"),
        ("max users", f"{plan.max_users} at {plan.context} tokens"),
        ("single-stream decode", f"{plan.single_stream_tok_s:.0f} tok/s (one stream on one engine)"),
        ("expected decode", f"{plan.expected_tok_s:.0f} tok/s ("
                            + (f"one stream on each of {plan.engines} engines" if plan.engines > 1 else "one engine, one stream") + ")"),
        ("aggregate decode", f"{plan.aggregate_tok_s:.0f} tok/s with {plan.max_users} users"),
        ("largest FP16 model", f"{plan.max_fp16_params_b:.0f}B on {'these GPUs' if plan.shape == 'split' or plan.servers == 1 else 'each server'}"),
    ]
    if plan.network_gbps:
        rows.append(("network between servers", f"{plan.network_gbps:.0f} Gbit/s per hop"))
    alt = plan.alternative
    if alt is not None:
        rows.append((
            f"instead, {layout_text(alt.tensor_parallel, alt.pipeline_parallel, alt.data_parallel)}",
            f"{alt.single_stream_tok_s:.0f} tok/s single stream, "
            + (f"{alt.expected_tok_s:.0f} with one stream per engine, " if alt.engines > 1 else "")
            + f"{alt.aggregate_tok_s:.0f} tok/s with {alt.max_users} users{'' if alt.fits else ' (does not fit)'}; "
            f"--data-parallel {alt.data_parallel}",
        ))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    for note in plan.notes:
        console.print(f"note: {note}", markup=False)


def render_shapes(replicas: planner.Plan, split: planner.Plan, recommended: planner.Shape) -> None:
    """Both shapes of 2+ servers side by side, the recommendation, and the recommended plan's notes."""
    table = Table(title=f"{replicas.model} {replicas.quantization} on {replicas.servers} servers of {replicas.gpu}")
    table.add_column("")
    table.add_column("replicas")
    table.add_column("split")

    def both(label: str, fmt: str, key: str) -> None:
        table.add_row(label, fmt.format(getattr(replicas, key)), fmt.format(getattr(split, key)))

    both("tier", "{}", "tier")
    table.add_row("fits", *("[green]yes[/]" if p.fits else "[red]no[/]" for p in (replicas, split)))
    table.add_row("GPUs per server", str(replicas.gpus_per_server), str(split.gpus_per_server))
    table.add_row("layout", *(layout_text(p.tensor_parallel, p.pipeline_parallel, p.data_parallel) for p in (replicas, split)))
    both("engines", "{}", "engines")
    table.add_row("largest FP16 model", f"{replicas.max_fp16_params_b:.0f}B (per server)", f"{split.max_fp16_params_b:.0f}B")
    both("users", "{}", "max_users")
    both("single-stream decode", "{:.0f} tok/s", "single_stream_tok_s")
    both("one stream per engine", "{:.0f} tok/s", "expected_tok_s")
    both("aggregate decode", "{:.0f} tok/s", "aggregate_tok_s")
    table.add_row(
        "network between servers",
        "requests only",
        f"{split.network_gbps:.0f} Gbit/s per hop",
    )
    console.print(table)
    chosen = replicas if recommended == "replicas" else split
    why = (
        "each server holds the model: replicas add throughput and survive a server's loss"
        if recommended == "replicas" and replicas.fits
        else "only the servers together hold the model"
        if split.fits
        else "neither shape fits"
    )
    console.print(f"recommended: {recommended} (tier {chosen.tier}): {why}; --shape picks one", markup=False)
    for note in chosen.notes:
        console.print(f"note: {note}", markup=False)


def render_compare(rows: list[CompareRow], title: str) -> None:
    table = Table(title=title, caption="tok/s: 1 = one stream; E = one stream on every engine at once; all = every "
                                       "user at once. $ with --gpu-hour-usd")
    columns = ("setup", "tier", "layout", "fits", "max FP16", "tok/s 1", "tok/s E", "tok/s all", "users", "link",
               "$/hour", "$/M tok")
    for column in columns:
        table.add_column(column, no_wrap=column in ("tier", "layout", "link"))
    for r in rows:
        table.add_row(
            r.setup, r.tier, layout_text(r.tensor_parallel, r.pipeline_parallel, r.data_parallel),
            "yes" if r.fits else "no", f"{r.max_fp16_params_b:.0f}B", f"{r.single_stream_tok_s:.0f}",
            f"{r.expected_tok_s:.0f}", f"{r.aggregate_tok_s:.0f}", str(r.max_users), r.interconnect,
            "-" if r.usd_per_hour is None else f"{r.usd_per_hour:.2f}",
            "-" if r.usd_per_million_tokens is None else f"{r.usd_per_million_tokens:.2f}",
        )
    Console(width=max(console.width, COMPARE_WIDTH), highlight=False, file=console.file).print(table)


def plan_command(
    model: Annotated[Optional[str], typer.Option("--model", help=f"Catalog model: {', '.join(catalog.MODELS)}.")] = None,
    params_b: Annotated[Optional[float], typer.Option("--params-b", help="Model size in billions of parameters, for a model outside the catalog.")] = None,
    quant: Annotated[Optional[str], typer.Option("--quant", help=f"Weights precision: {', '.join(QUANTS)}. Default {DEFAULT_QUANT}.")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", help=f"Catalog GPU: {', '.join(catalog.GPUS)}. Default {DEFAULT_GPU}.")] = None,
    gpus: Annotated[Optional[int], typer.Option("--gpus", help="GPUs per server (1-8). Omit to get the smallest set that fits.", min=1, max=8)] = None,
    servers: Annotated[Optional[int], typer.Option("--servers", help=f"Servers (1-{MAX_SERVERS}). With 2 or more, --shape says how they serve.", min=1, max=MAX_SERVERS)] = None,
    shape: Annotated[Optional[str], typer.Option("--shape", help="With 2+ servers: replicas (a full copy per server: failover tier) or split (one copy over all: multi-server tier). Omit to see both.")] = None,
    data_parallel: Annotated[Optional[int], typer.Option("--data-parallel", help="Engines per server, each on GPUs/N of them (vLLM --data-parallel-size N); 1: one engine over all the server's GPUs. Omit for the planner's choice. Needs --gpus; replicas only.", min=1, max=8)] = None,
    users: Annotated[Optional[int], typer.Option("--users", help="Concurrent users the tier must carry.", min=1, max=10_000_000)] = None,
    context: Annotated[Optional[int], typer.Option("--context", help=f"Tokens of context per user. Default {planner.DEFAULT_CONTEXT}, or the model's own when shorter.", min=1)] = None,
    compare_all: Annotated[bool, typer.Option("--compare", help=f"Compare single GPU, multi-GPU, replicas and split (default {COMPARE_SERVERS} x {COMPARE_GPUS} GPUs).")] = False,
    gpu_hour_usd: Annotated[Optional[float], typer.Option("--gpu-hour-usd", help="Price of one GPU-hour in USD: adds cost per hour and per million output tokens to --compare.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON (fixed keys); with 2+ servers and no --shape, the recommended shape's plan; with --compare, the rows.")] = False,
    stack: Annotated[Optional[str], typer.Option("--stack", help="Plan a stack's tier spec as it stands (its GPUs, layout, context), with the planner's layout when it differs; no sizing flags.")] = None,
    file: FileOpt = None,
) -> None:
    """Size a deployment: memory fit, tier, TP/PP, users and expected decode tokens/second.

    Exits 0 when the model fits, 1 when it does not (the notes name the smallest fix), 2 on bad flags.

    Examples:
      tierkit plan --model llama-3.3-70b --quant awq --gpu rtx-pro-6000 --gpus 4
      tierkit plan --model llama-3.3-70b --quant awq --gpu rtx-pro-6000 --gpus 4 --data-parallel 1
      tierkit plan --params-b 300 --quant fp16 --gpus 4 --servers 2
      tierkit plan --model llama-3.3-70b --quant awq --compare --gpu-hour-usd 2.5
      tierkit plan --stack multi-gpu
    """
    sizing = {"--model": model, "--params-b": params_b, "--quant": quant, "--gpu": gpu, "--gpus": gpus,
              "--servers": servers, "--shape": shape, "--data-parallel": data_parallel, "--users": users,
              "--context": context, "--compare": compare_all or None, "--gpu-hour-usd": gpu_hour_usd}
    if stack is not None or file is not None:
        given = next((flag for flag, value in sizing.items() if value is not None), None)
        if given:
            raise TierkitError(f"{given}: --stack/--file plan the spec as it stands; drop {given}, or drop --stack/--file")
        _plan_spec(stack, file, as_json)
        return
    quant, gpu = quant or DEFAULT_QUANT, gpu or DEFAULT_GPU
    _positive("--params-b", params_b, "70")
    if params_b is not None and params_b > MAX_PARAMS_B:
        raise TierkitError(f"--params-b: {params_b:g} billion parameters is beyond any model; give at most {MAX_PARAMS_B:g}")
    _positive("--gpu-hour-usd", gpu_hour_usd, "2.5")
    if quant not in catalog.BYTES_PER_PARAM:
        raise TierkitError(catalog.unknown_key("quantization", "--quant", quant, catalog.BYTES_PER_PARAM))
    if shape is not None and shape not in planner.SHAPES:
        raise TierkitError(f"--shape: unknown shape {shape!r}; choose one of: {', '.join(planner.SHAPES)}")
    if gpu_hour_usd is not None and not compare_all:
        raise TierkitError("--gpu-hour-usd: prices the --compare table; add --compare")
    m = _model(model, params_b)
    g = catalog.lookup_gpu(gpu, "--gpu")
    context = context or planner.default_context(m)
    if context > m.default_context:
        raise TierkitError(f"--context: {context} is longer than {m.key}'s {m.default_context}; use --context {m.default_context} or less")
    need_cc = catalog.MIN_COMPUTE_CAPABILITY.get(quant)
    if need_cc and g.compute_capability < need_cc:
        raise TierkitError(f"--quant: {quant} needs compute capability {need_cc}+ (Ada or newer), {g.key} has {g.compute_capability}; use int8 or awq")
    if compare_all:
        if data_parallel is not None:
            raise TierkitError("--data-parallel: --compare shows each setup's recommended layout; drop it, or drop --compare")
        _compare(m, quant, g, gpus, servers, shape, users, context, gpu_hour_usd, as_json)
        return
    n_servers = servers or 1
    if n_servers == 1 and shape is not None:
        raise TierkitError("--shape: says how 2 or more servers serve; add --servers 2 (or more), or drop --shape")
    _check_data_parallel(data_parallel, gpus, n_servers, shape)
    if n_servers > 1 and shape is None:
        both = {s: _sized(m, quant, g, gpus, n_servers, context, users, s, data_parallel) for s in planner.SHAPES}
        chosen = planner.recommended_shape(both["replicas"], both["split"])
        result = both[chosen]
        if as_json:
            print_json(result.to_json())
        else:
            render_shapes(both["replicas"], both["split"], chosen)
    else:
        result = _sized(m, quant, g, gpus, n_servers, context, users, shape or "replicas", data_parallel)
        if as_json:
            print_json(result.to_json())
        else:
            render(result)
    if not result.fits:
        raise typer.Exit(1)


def _plan_spec(stack: str | None, file: Path | None, as_json: bool) -> None:
    """A stack's plan, its notes, and the planner's layout when the spec's differs."""
    from tierkit import spec as tier_spec, stackfiles

    spec = stackfiles.load(stack, file)
    result = tier_spec.plan_for_spec(spec)
    advice = tier_spec.layout_advice(spec)
    if advice:
        result = result.model_copy(update={"notes": [*result.notes, advice]})
    if as_json:
        print_json(result.to_json())
    else:
        render(result)


def _check_data_parallel(data_parallel: int | None, gpus: int | None, servers: int, shape: str | None) -> None:
    if data_parallel is None:
        return
    if gpus is None:
        raise TierkitError(f"--data-parallel: needs --gpus, the GPUs per server its engines share; e.g. --gpus 4 --data-parallel {data_parallel}")
    if gpus % data_parallel:
        options = ", ".join(str(d) for d in planner.divisors(gpus))
        raise TierkitError(f"--data-parallel: {data_parallel} engines do not share --gpus {gpus} evenly; use one of {options}")
    if servers > 1 and shape != "replicas" and data_parallel > 1:
        raise TierkitError("--data-parallel: a split runs one engine over all its servers; add --shape replicas, or drop --data-parallel")


def _sized(
    m: catalog.Model, quant: str, g: catalog.Gpu, gpus: int | None, servers: int, context: int,
    users: int | None, shape: planner.Shape, data_parallel: int | None = None,
) -> planner.Plan:
    """The plan for these GPUs, or the smallest GPU set that fits; a misfit names the smallest fix."""
    if gpus is None:
        return planner.recommend(m, quant, g, servers, context, users, shape)
    dp = data_parallel if shape == "replicas" else None
    result = planner.plan(m, quant, g, gpus, servers, context, users, shape=shape, data_parallel=dp)
    if result.fits:
        return result
    fewer = next((d for d in reversed(planner.divisors(gpus)) if dp and d < dp
                  and planner.plan(m, quant, g, gpus, servers, context, users, shape=shape, data_parallel=d).fits), None)
    if fewer is not None:
        fix = f"needs --data-parallel {fewer} (fewer, larger engines)"
    else:
        fix = planner.smallest_fix(m, quant, g, gpus, context, planner.DEFAULT_UTILIZATION, servers, shape)
    return result.model_copy(update={"notes": [*result.notes, fix]})


def _compare(
    m: catalog.Model, quant: str, g: catalog.Gpu, gpus: int | None, servers: int | None, shape: str | None,
    users: int | None, context: int, gpu_hour_usd: float | None, as_json: bool,
) -> None:
    if shape is not None or users is not None:
        raise TierkitError(f"{'--shape' if shape is not None else '--users'}: --compare shows every setup; drop it, or drop --compare")
    per_server = gpus or COMPARE_GPUS
    n_servers = servers or COMPARE_SERVERS
    if per_server < 2:
        raise TierkitError("--gpus: --compare needs 2 or more GPUs per server for its multi-GPU rows; e.g. --gpus 4")
    if n_servers < 2:
        raise TierkitError("--servers: --compare needs 2 or more servers for its replicas and split rows; e.g. --servers 2")
    rows = compare(m, quant, g, per_server, n_servers, context, gpu_hour_usd)
    if as_json:
        print_json({
            "model": m.key, "quantization": quant, "gpu": g.key, "context": context, "gpu_hour_usd": gpu_hour_usd,
            "rows": [r.model_dump() for r in rows],
        })
    else:
        render_compare(rows, f"{m.key} {quant} on {g.key}, {context} tokens of context")
    if not any(r.fits for r in rows):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
