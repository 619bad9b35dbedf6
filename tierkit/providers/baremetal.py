"""The bare-metal provider: adopts servers that already exist, as the spec lists them.

It registers nothing: the hosts come straight from the spec. Their SSH host keys are pinned by
the Ready step (`tierkit wait-ssh`) into the stack's known_hosts on first contact. The servers
install the NVIDIA driver, NCCL and vLLM from their public sources, and the smoke gate is the
plan's figure.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.providers.base import Provisioned, RealServers, StackContext

if TYPE_CHECKING:
    import pulumi

    from tierkit.spec import TierSpec


class BaremetalHost(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    address: str
    user: str = "root"
    port: int = Field(22, ge=1, le=65535)
    key_path: str


class BaremetalConfig(BaseModel):
    """Servers that already exist: tierkit adopts them over SSH."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["baremetal"]
    hosts: list[BaremetalHost] = Field(min_length=1)


def config_of(spec: TierSpec) -> BaremetalConfig:
    p = spec.provider
    assert isinstance(p, BaremetalConfig)
    return p


def listed_hosts(spec: TierSpec) -> list[Host]:
    """The spec's hosts as Host records (key paths expanded)."""
    return [Host(name=h.name, address=h.address, port=h.port, user=h.user, key_path=str(Path(h.key_path).expanduser()))
            for h in config_of(spec).hosts]


def source_address(destination: str) -> str:
    """The address this machine reaches `destination` from (a UDP connect is a route lookup: no
    packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((destination, 9))
            return str(probe.getsockname()[0])
    except OSError as exc:
        raise TierkitError(f"serving.allowed_sources: cannot tell which address of this machine reaches "
                           f"{destination} ({exc.strerror}); set serving.allowed_sources") from None


class BaremetalProvider(RealServers):
    kind: ClassVar[str] = "baremetal"
    config: ClassVar[type[BaseModel]] = BaremetalConfig
    load_balancer: ClassVar[bool] = False

    def allowed_sources(self, spec: TierSpec, hosts: list[Host]) -> list[str]:
        """Off the failover tier, the operator's machine (smoke test, clients) by default."""
        return [] if spec.failover is not None else [source_address(hosts[0].address)]

    def problems(self, spec: TierSpec) -> list[str]:
        listed = config_of(spec).hosts
        if len(listed) != spec.server_count:
            return [f"provider.hosts: {spec.tier} needs {spec.server_count} host(s), got {len(listed)}; "
                    f"list exactly {spec.server_count}"]
        if spec.failover is None:
            return []
        vip = spec.failover.virtual_ip
        addrs = []
        for h in listed:
            try:
                addrs.append(ipaddress.IPv4Address(h.address))
            except ValueError:
                continue  # a host name: its subnet is unknown here
        if vip in addrs:
            return [f"failover.virtual_ip: {vip} is a host's own address; pick a free address in the hosts' subnet"]
        on_24 = ipaddress.IPv4Network(f"{vip}/24", strict=False)
        if addrs and not any(ipaddress.IPv4Network(f"{a}/24", strict=False) == on_24 for a in addrs):
            return [f"failover.virtual_ip: {vip} is outside the hosts' subnet; pick a free address next to {addrs[0]}"]
        return []

    def provision(self, spec: TierSpec, ctx: StackContext, opts: pulumi.ResourceOptions) -> Provisioned:
        import pulumi

        return Provisioned(hosts=pulumi.Output.from_input([h.model_dump() for h in listed_hosts(spec)]))

    def hosts(self, spec: TierSpec) -> list[Host]:
        return listed_hosts(spec)
