"""`tierkit plan`: size a deployment before any server is touched."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from tierkit import catalog, planner
from tierkit.console import console, print_json
from tierkit.errors import TierkitError

QUANTS = list(catalog.BYTES_PER_PARAM)


def _model(model_key: str | None, params_b: float | None) -> catalog.Model:
    if (model_key is None) == (params_b is None):
        raise TierkitError("--model/--params-b: give exactly one; e.g. --model llama-3.3-70b or --params-b 70")
    if model_key is not None:
        return catalog.lookup_model(model_key, "--model")
    # A bare parameter count: borrow the shape of the catalog model closest in size.
    nearest = min((m for m in catalog.MODELS.values() if m.key != "tiny-llama"), key=lambda m: abs(m.params_b - params_b))
    return nearest.model_copy(update={"key": f"{params_b:g}b (shaped like {nearest.key})", "params_b": params_b})


def render(plan: planner.Plan) -> None:
    """The plan as a two-column table and its notes."""
    table = Table(title=f"{plan.model} {plan.quantization} on {plan.gpu}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("fits", "[green]yes[/]" if plan.fits else "[red]no[/]"),
        ("tier", plan.tier),
        ("servers x GPUs", f"{plan.servers} x {plan.gpus_per_server}"),
        ("parallelism", f"TP={plan.tensor_parallel} PP={plan.pipeline_parallel}"),
        ("weights", f"{plan.weights_gib:.1f} GiB"),
        ("KV cache", f"{plan.kv_cache_gib:.1f} GiB"),
        ("max users", f"{plan.max_users} at {plan.context} tokens"),
        ("expected decode", f"{plan.expected_tok_s:.0f} tok/s ({plan.single_stream_tok_s:.0f} per replica, single stream)"),
        ("largest FP16 model", f"{plan.max_fp16_params_b:.0f}B on these GPUs"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    for note in plan.notes:
        console.print(f"note: {note}", markup=False)


def plan_command(
    model: Annotated[Optional[str], typer.Option("--model", help=f"Catalog model: {', '.join(catalog.MODELS)}.")] = None,
    params_b: Annotated[Optional[float], typer.Option("--params-b", help="Model size in billions of parameters, for a model outside the catalog.", min=0.001)] = None,
    quant: Annotated[str, typer.Option("--quant", help=f"Weights precision: {', '.join(QUANTS)}.")] = "bf16",
    gpu: Annotated[str, typer.Option("--gpu", help=f"Catalog GPU: {', '.join(catalog.GPUS)}.")] = "rtx-pro-6000",
    gpus: Annotated[Optional[int], typer.Option("--gpus", help="GPUs per server (1-8). Omit to get the smallest set that fits.", min=1, max=8)] = None,
    servers: Annotated[int, typer.Option("--servers", help="Servers, each serving a full replica (2 = failover tier).", min=1, max=2)] = 1,
    users: Annotated[Optional[int], typer.Option("--users", help="Concurrent users the tier must carry.", min=1)] = None,
    context: Annotated[Optional[int], typer.Option("--context", help=f"Tokens of context per user. Default {planner.DEFAULT_CONTEXT}, or the model's own when shorter.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON (fixed keys).")] = False,
) -> None:
    """Size a deployment: memory fit, tier, TP/PP, users and expected decode tokens/second.

    Exits 0 when the model fits, 1 when it does not (the notes name the smallest fix), 2 on bad flags.

    Example: tierkit plan --model llama-3.3-70b --quant awq --gpu rtx-pro-6000 --gpus 4
    """
    if quant not in catalog.BYTES_PER_PARAM:
        raise TierkitError(catalog.unknown_key("quantization", "--quant", quant, catalog.BYTES_PER_PARAM))
    m = _model(model, params_b)
    g = catalog.lookup_gpu(gpu, "--gpu")
    context = context or planner.default_context(m)
    if context > m.default_context:
        raise TierkitError(f"--context: {context} is longer than {m.key}'s {m.default_context}; use --context {m.default_context} or less")
    need_cc = catalog.MIN_COMPUTE_CAPABILITY.get(quant)
    if need_cc and g.compute_capability < need_cc:
        raise TierkitError(f"--quant: {quant} needs compute capability {need_cc}+ (Ada or newer), {g.key} has {g.compute_capability}; use int8 or awq")
    if gpus is None:
        result = planner.recommend(m, quant, g, servers, context, users)
    else:
        result = planner.plan(m, quant, g, gpus, servers, context, users)
        if not result.fits:
            fix = planner.smallest_fix(m, quant, g, gpus, context, planner.DEFAULT_UTILIZATION)
            result = result.model_copy(update={"notes": [*result.notes, fix]})
    if as_json:
        print_json(result.to_json())
    else:
        render(result)
    if not result.fits:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
