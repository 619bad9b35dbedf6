"""`tierkit validate`: check a stack file's tier spec without touching anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tierkit import planner, providers, spec as tier_spec
from tierkit.console import console, print_json
from tierkit.errors import TierkitError


def summary(spec: tier_spec.TierSpec, plan: planner.Plan) -> str:
    """One line: tier, provider, GPUs, model, parallelism and the plan's figures."""
    return (
        f"{spec.tier} on {spec.provider.kind}: {spec.server_count}x server, {spec.gpu.count}x {spec.gpu.model}, "
        f"{spec.model_info.key} {spec.model.quantization} (TP={spec.tensor_parallel} PP={spec.pipeline_parallel}, "
        f"context {spec.context}); expected {plan.expected_tok_s:,.0f} tok/s, {plan.max_users:,} users"
    )


def load(stack: str | None, file: Path | None) -> tier_spec.TierSpec:
    """The spec named by --stack or --file (exactly one)."""
    if (stack is None) == (file is None):
        raise TierkitError("--stack/--file: give exactly one; e.g. --stack single-gpu or --file stacks/Pulumi.single-gpu.yaml")
    return tier_spec.load_stack(stack) if stack is not None else tier_spec.load_spec_file(file)


def validate_command(
    stack: Annotated[Optional[str], typer.Option("--stack", help="Stack name: reads <stackConfigDir>/Pulumi.NAME.yaml.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", help="Any stack file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the validated spec and its plan as JSON.")] = False,
) -> None:
    """Validate a tier spec: prints `ok: <summary>` and exits 0, or one `error:` line per problem and exits 2.

    Runs every check `tierkit up` runs before it creates anything: the spec's own rules and its
    provider's (the lab's subnet, topology file and faults; bare-metal key files; aws settings)."""
    spec = load(stack, file)
    problems = providers.problems(spec)  # what `up` checks before it creates anything
    if problems:
        raise TierkitError(*problems)
    plan = planner.plan_for_spec(spec)
    if as_json:
        print_json({"ok": True, "summary": summary(spec, plan), "spec": spec.model_dump(mode="json"), "plan": plan.to_json()})
    else:
        console.print(f"ok: {summary(spec, plan)}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_command)
