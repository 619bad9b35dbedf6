"""What the Pulumi program would register for a stack, from Pulumi's mock runtime (for CI).

`preview(root, stack)` validates the stack's spec, plans it, and runs the real program under the
mocks in preview mode: nothing runs, nothing is created, no cloud is asked. Lookups (the aws
provider's VPC, subnets, zones and AMI) get placeholder answers in parentheses from the provider
(`Provider.preview_lookup`); ids, addresses and command outputs stay unknown, as in a Pulumi
preview. It answers "what would this stack make, with which settings", not "what changes": that
needs the stack's state (`pulumi preview --diff`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi.output import Unknown

from tierkit import program, providers
from tierkit.errors import TierkitError
from tierkit.planner import Plan
from tierkit.rehearsal.config import load_stack_config
from tierkit.rehearsal.runtime import Backend, Registration, is_sealed, run_program
from tierkit.spec import TierSpec, load_stack, plan_for_spec

# The inputs worth a column, in this order, when a resource has them (nested keys dotted).
KEY_INPUTS = (
    "instanceType", "ami", "subnetId", "placementGroup", "rootBlockDevice.volumeSize", "metadataOptions.httpTokens",
    "loadBalancerType", "subnets", "protocol", "port", "targetType", "preserveClientIp", "healthCheck.path",
    "ipProtocol", "fromPort", "toPort", "cidrIpv4", "referencedSecurityGroupId", "targetId", "vpcId", "create",
)
SECRET = "[secret]"
UNKNOWN = "(known after apply)"


@dataclass(frozen=True)
class PlannedResource:
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    ignore_changes: list[str]

    def key_inputs(self) -> dict[str, Any]:
        found = {}
        for key in KEY_INPUTS:
            value: Any = self.inputs
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                found[key] = value
        return found


@dataclass(frozen=True)
class Preview:
    stack: str
    spec: TierSpec
    plan: Plan
    resources: list[PlannedResource]
    exports: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "engine": "mocks",
            "tier": self.spec.tier,
            "provider": self.spec.provider.kind,
            "plan": self.plan.to_json(),
            "resources": [
                {"type": r.type, "name": r.name, "parent": r.parent, "custom": r.custom,
                 "ignore_changes": r.ignore_changes, "inputs": r.inputs}
                for r in self.resources
            ],
            "exports": self.exports,
        }


def masked(value: Any) -> Any:
    """Inputs as a preview may show them: secrets as "[secret]", values not known until a
    resource exists as "(known after apply)"."""
    if is_sealed(value):
        return SECRET
    if isinstance(value, Unknown):
        return UNKNOWN
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


class PreviewBackend(Backend):
    """Registers without running anything; the provider answers its lookups with placeholders."""

    def __init__(self, spec: TierSpec) -> None:
        self.spec = spec

    def create(self, reg: Registration) -> tuple[str, dict[str, Any]]:
        return "", dict(reg.inputs)

    def invoke(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        return providers.get(self.spec).preview_lookup(self.spec, token, args)


def preview(root: Path, stack: str) -> Preview:
    """Validate, plan, and list what the program would register. Raises TierkitError."""
    spec = load_stack(stack, root)  # the provider's rules included
    cfg = load_stack_config(root, stack, program.SECRET_ENV)
    run = run_program(program.main, PreviewBackend(spec), project=cfg.project, stack=stack,
                      config=cfg.config, secret_keys=cfg.secret_keys, preview=True)
    if isinstance(run.error, TierkitError):
        raise run.error
    if run.error is not None:
        raise TierkitError(f"preview: the program failed under the mocks ({type(run.error).__name__}: {run.error})",
                           exit_code=1)
    names = {r.urn: r.name for r in run.registrations}
    built = {(t, n): i for i, (t, n, _) in enumerate(run.constructed)}  # the program's order, not the threads'
    resources = [
        PlannedResource(r.type, r.name, names.get(r.parent or "", "<stack>"), r.custom, masked(r.inputs),
                        list(r.ignore_changes))
        for r in sorted(run.registrations, key=lambda r: built.get((r.type, r.name), len(built)))
    ]
    return Preview(stack, spec, plan_for_spec(spec), resources, sorted(run.exports))
