"""The provider contract: everything that differs between where servers come from.

A provider is one module under tierkit/providers/ with one `Provider` subclass. It owns:

- `config`: the pydantic model of the spec's `provider:` section (its `kind` is the registry key);
- `problems(spec)`: what it cannot serve, one line each, paths relative to the spec's root;
- `provision(spec, ctx, opts)`: registers its Pulumi resources and returns `Provisioned`;
- `hosts(spec)`: the hosts of a running stack when no hosts file is given;
- `model_path(spec)`, `group_vars(spec, hosts)` and `host_vars(spec, hosts)`: what the roles
  need that differs on its servers, for all of them and per host (the core renders the rest of
  the inventory);
- `configure_services(spec, hosts)`: what must run on this machine while `configure` runs;
- `derive_source(spec)` and `notes(...)`: where `min_output_tok_s: derive` takes its figure, and
  what a reader of the outputs must know about how the deploy was tested.

Real GPU servers answer the last six the same way (`RealServers`); the lab answers each itself.
The core (spec, inventory, fleet, commands) calls these and never asks which provider it has.
Provider modules import Pulumi only inside `provision`, so validating a spec stays light.
"""

from __future__ import annotations

import os
import shlex
import sys
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

from tierkit.hosts import Host
from tierkit.paths import StackPaths

if TYPE_CHECKING:
    import pulumi

    from tierkit.planner import Plan
    from tierkit.spec import TierSpec

# Where `min_output_tok_s: derive` takes its figure: the plan's estimate, or a measurement of the
# deployed endpoint (`tierkit calibrate`) where the plan's GPU figures cannot apply.
DeriveSource = Literal["plan", "calibration"]


@dataclass(frozen=True)
class StackContext:
    """Where the program runs: the project root, the stack, and how to call `tierkit`."""

    root: Path
    stack: str

    @property
    def paths(self) -> StackPaths:
        return StackPaths(self.root, self.stack)

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
    known only once resources exist (an Output of a list of lines)."""

    hosts: pulumi.Output
    endpoint: pulumi.Output | None = None
    resources: list[pulumi.Resource] = field(default_factory=list)
    notes: pulumi.Output | None = None


class Provider(ABC):
    """One place servers come from. Every member is abstract: a provider states each answer."""

    kind: ClassVar[str]
    config: ClassVar[type[BaseModel]]  # the spec's `provider:` section, discriminated by `kind`
    load_balancer: ClassVar[bool]  # puts its own load balancer in front (no failover VIP needed)
    # vLLM must require an API key on its servers (one is generated when the stack sets none):
    # every provider's but the lab's, whose switch no other machine reaches.
    api_key_required: ClassVar[bool]

    @abstractmethod
    def problems(self, spec: TierSpec) -> list[str]:
        """What this spec asks that the provider cannot do: `<path>: <what>; <fix>`, the path
        relative to the spec (e.g. `provider.subnet`), so the caller can prefix it."""

    @abstractmethod
    def provision(self, spec: TierSpec, ctx: StackContext, opts: pulumi.ResourceOptions) -> Provisioned:
        """Register the provider's resources (children of `opts.parent`) and return the hosts."""

    @abstractmethod
    def hosts(self, spec: TierSpec) -> list[Host]:
        """The hosts of this stack as they run now, for verbs given no hosts file (TierkitError
        naming the fix when only the deploy's outputs know them)."""

    @abstractmethod
    def model_path(self, spec: TierSpec) -> str | None:
        """Where the model's weights already are on this provider's servers (None: the spec's
        `model.path`, or the Hugging Face id)."""

    @abstractmethod
    def group_vars(self, spec: TierSpec, hosts: list[Host]) -> dict[str, Any]:
        """Role variables this provider sets over the core's (role-prefixed names)."""

    @abstractmethod
    def host_vars(self, spec: TierSpec, hosts: list[Host]) -> dict[str, dict[str, Any]]:
        """Role variables this provider sets per host, by host name (hosts it leaves alone absent)."""

    @abstractmethod
    def allowed_sources(self, spec: TierSpec, hosts: list[Host]) -> list[str]:
        """Where the serving port's clients come from when the spec does not say
        (`serving.allowed_sources`): e.g. the lab's switch, the operator's machine."""

    @abstractmethod
    def configure_services(self, spec: TierSpec, hosts: list[Host]) -> AbstractContextManager[None]:
        """What must run on this machine while `configure` runs (entered around the playbook)."""

    @abstractmethod
    def derive_source(self, spec: TierSpec) -> DeriveSource:
        """Where `smoke.min_output_tok_s: derive` takes its figure on this provider."""

    def preview_lookup(self, spec: TierSpec, token: str, args: dict[str, Any]) -> dict[str, Any]:
        """Placeholder answers to this provider's lookups (Pulumi invokes) for `tierkit preview`
        under the mocks, where no cloud is asked. A provider that looks nothing up has none."""
        from tierkit.errors import TierkitError

        raise TierkitError(f"preview: the {self.kind} provider makes no lookups, yet {token} was asked")

    @abstractmethod
    def notes(self, spec: TierSpec, plan: Plan, hosts: list[dict[str, Any]], endpoint: str) -> list[str]:
        """What a reader of the deploy's outputs must know about how it was tested."""


def key_file_problem(field: str, path_text: str) -> str | None:
    """An SSH key file tierkit (and ssh, and Ansible) must read: a readable regular file."""
    path = Path(path_text).expanduser()
    fix = "create the key pair (ssh-keygen -t ed25519) or fix the path"
    if not path.exists():
        return f"{field}: {path} does not exist; {fix}"
    if not path.is_file():
        return f"{field}: {path} is not a regular file; {fix}"
    if not os.access(path, os.R_OK):
        return f"{field}: {path} is not readable by this user; fix its owner or mode"
    return None


class RealServers(Provider, ABC):
    """The answers for real GPU servers (bare metal, cloud instances): the roles install from the
    public sources with the core's settings, nothing runs here meanwhile, and the plan's figures
    are the smoke gate. Such a provider still states its own rules, provisioning and hosts."""

    def model_path(self, spec: TierSpec) -> str | None:
        return None

    def group_vars(self, spec: TierSpec, hosts: list[Host]) -> dict[str, Any]:
        return {}

    def host_vars(self, spec: TierSpec, hosts: list[Host]) -> dict[str, dict[str, Any]]:
        return {}

    def configure_services(self, spec: TierSpec, hosts: list[Host]) -> AbstractContextManager[None]:
        return nullcontext()

    def derive_source(self, spec: TierSpec) -> DeriveSource:
        return "plan"

    def notes(self, spec: TierSpec, plan: Plan, hosts: list[dict[str, Any]], endpoint: str) -> list[str]:
        return [f"smoke gate from the plan: {plan.expected_tok_s:,.0f} tok/s expected"]
