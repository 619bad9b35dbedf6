"""Providers: each turns a tier spec into servers, as `Host` records (tierkit/hosts.py).

`lab` simulates GPU servers on this machine, `baremetal` adopts servers that exist, `aws` makes
EC2 instances. A provider registers its resources under the Servers component and returns what it
provisioned; it knows nothing of Ansible, SSH readiness or the smoke test. `problems(spec)` runs
before any resource is registered, so a spec a provider cannot serve fails with one-line errors.
"""

from __future__ import annotations

import importlib
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from tierkit.errors import TierkitError
from tierkit.spec import TierSpec


@dataclass(frozen=True)
class StackContext:
    """Where the program runs: the project root, the stack, and how to call `tierkit`."""

    root: Path
    stack: str

    @property
    def state_dir(self) -> Path:
        """`.tierkit/<stack>/`: the stack's known_hosts and smoke report (not a Pulumi state)."""
        return self.root / ".tierkit" / self.stack

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @staticmethod
    def tierkit() -> str:
        """The `tierkit` console script beside this interpreter (commands run without the venv's
        PATH under the Pulumi CLI)."""
        script = Path(sys.executable).with_name("tierkit")
        return str(script) if script.exists() else "tierkit"

    def command(self, *args: str) -> str:
        """`tierkit ARGS...` as one shell-quoted command line."""
        return shlex.join([self.tierkit(), *args])


@dataclass
class Provisioned:
    """What a provider made: the hosts (a list of Host dicts, JSON-ready), a load balancer's base
    URL when the provider puts one in front of the servers, and notes for the stack's outputs
    (an Output of a list of lines)."""

    hosts: pulumi.Output
    endpoint: pulumi.Output | None = None
    resources: list[pulumi.Resource] = field(default_factory=list)
    notes: pulumi.Output | None = None


def problems(spec: TierSpec) -> list[str]:
    """What this spec asks of its provider that the provider cannot do (one line each)."""
    module = importlib.import_module(f"tierkit.providers.{spec.provider.kind}")
    return module.problems(spec)


def provision(spec: TierSpec, ctx: StackContext, opts: pulumi.ResourceOptions) -> Provisioned:
    """Register the provider's resources (children of `opts.parent`) and return the hosts."""
    module = importlib.import_module(f"tierkit.providers.{spec.provider.kind}")
    return module.provision(spec, ctx, opts)


def preview_invoke(spec: TierSpec, token: str, args: dict[str, Any]) -> dict[str, Any]:
    """Placeholder answers to the provider's lookups, for a preview under Pulumi's mocks (nothing
    is asked of a cloud). Providers that look nothing up have none."""
    module = importlib.import_module(f"tierkit.providers.{spec.provider.kind}")
    answer = getattr(module, "preview_invoke", None)
    if answer is None:
        raise TierkitError(f"preview: the {spec.provider.kind} provider makes no lookups, yet {token} was asked")
    return answer(spec, token, args)
