"""`tierkit validate`: check a stack file's tier spec without touching anything."""

from __future__ import annotations

from typing import Annotated

import typer

from tierkit import planner, spec as tier_spec, stackfiles
from tierkit.commands.options import FileOpt, StackOpt
from tierkit.console import console, print_json


def summary(spec: tier_spec.TierSpec, plan: planner.Plan) -> str:
    """One line: tier, provider, GPUs, model, parallelism and the plan's figures."""
    return (
        f"{spec.tier} on {spec.provider.kind}: {spec.server_count}x server, {spec.gpu.count}x {spec.gpu.model}, "
        f"{spec.model_info.key} {spec.model.quantization} (TP={spec.tensor_parallel} PP={spec.pipeline_parallel}"
        f"{f' DP={spec.data_parallel}' if spec.data_parallel > 1 else ''}, "
        f"context {spec.context}); expected {plan.expected_tok_s:,.0f} tok/s, {plan.max_users:,} users"
    )


def validate_command(
    stack: StackOpt = None,
    file: FileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the validated spec and its plan as JSON.")] = False,
) -> None:
    """Validate a tier spec: prints `ok: <summary>` and exits 0, or one `error:` line per problem and exits 2.

    Runs every check `tierkit up` runs before it creates anything: the spec's own rules and its
    provider's (the lab's subnet, topology file and faults; bare-metal key files; aws settings).
    When the planner recommends another layout of the GPUs (engines, TP, PP), a `note:` line says
    which, with both layouts' figures.
    """
    spec = stackfiles.load(stack, file)
    plan = tier_spec.plan_for_spec(spec)
    advice = tier_spec.layout_advice(spec)
    if as_json:
        print_json({"ok": True, "summary": summary(spec, plan), "spec": spec.model_dump(mode="json"), "plan": plan.to_json(),
                    "layout_advice": advice})
        return
    console.print(f"ok: {summary(spec, plan)}", markup=False, soft_wrap=True)
    if advice:
        console.print(f"note: {advice}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_command)
