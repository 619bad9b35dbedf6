"""Providers: where a tier's servers come from, each one module with one `Provider` (base.py).

`lab` simulates GPU servers on this machine, `baremetal` adopts servers that exist, `aws` makes
EC2 instances. The registry below is the one list of them: the spec takes its `provider:`
section's models from it, and `get(spec)` hands every other part of tierkit the provider object,
so nothing outside this package asks which provider it has. A new provider is one module here,
one line in PROVIDERS, and its tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from tierkit.providers.aws import AwsProvider
from tierkit.providers.baremetal import BaremetalProvider
from tierkit.providers.base import Provider, Provisioned, StackContext
from tierkit.providers.lab import LabProvider

if TYPE_CHECKING:
    from tierkit.spec import TierSpec

__all__ = ["PROVIDERS", "ProviderConfig", "Provider", "Provisioned", "StackContext", "get", "for_kind", "problems"]

# kind -> provider; the first is the default when a spec names none.
PROVIDERS: dict[str, Provider] = {p.kind: p for p in (LabProvider(), BaremetalProvider(), AwsProvider())}
DEFAULT_KIND = next(iter(PROVIDERS))

# The spec's `provider:` section: one of the providers' config models, chosen by `kind`.
ProviderConfig = Annotated[Union[tuple(p.config for p in PROVIDERS.values())], Field(discriminator="kind")]  # noqa: UP007


def default_config() -> object:
    """The `provider:` section of a spec that gives none."""
    return PROVIDERS[DEFAULT_KIND].config()


def for_kind(kind: str) -> Provider:
    return PROVIDERS[kind]


def get(spec: TierSpec) -> Provider:
    """The provider of this spec."""
    return PROVIDERS[spec.provider.kind]


def problems(spec: TierSpec, prefix: str) -> list[str]:
    """What the spec's provider cannot serve, each line under `prefix` (the spec's config key)."""
    return [f"{prefix}.{line}" for line in get(spec).problems(spec)]
