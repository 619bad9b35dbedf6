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

from pydantic import BaseModel, Field

from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.providers.base import Provisioned, RealServers, StackContext, key_file_problem
from tierkit.safe_yaml import excerpt
from tierkit.textrules import HostAddress, HostName, LocalPath, Port, PosixUser, StrictModel, vip_problem

if TYPE_CHECKING:
    import pulumi

    from tierkit.spec import TierSpec


class BaremetalHost(StrictModel):
    name: HostName = Field(description="inventory name: letters, digits, _ and -")
    address: HostAddress
    user: PosixUser = "root"
    port: Port = 22
    key_path: LocalPath


class BaremetalConfig(StrictModel):
    """Servers that already exist: tierkit adopts them over SSH."""

    kind: Literal["baremetal"]
    hosts: list[BaremetalHost] = Field(min_length=1, max_length=64)


def config_of(spec: TierSpec) -> BaremetalConfig:
    p = spec.provider
    assert isinstance(p, BaremetalConfig)
    return p


def unique_hosts(listed: list[BaremetalHost]) -> list[str]:
    """Each server once: no name (case-insensitive) or address given twice."""
    problems = []
    names: dict[str, int] = {}
    addresses: dict[str, int] = {}
    for i, h in enumerate(listed):
        try:
            address = str(ipaddress.ip_address(h.address))
        except ValueError:
            address = h.address.lower().removesuffix(".")
        for key, seen, what in ((h.name.lower(), names, "name"), (address, addresses, "address")):
            if key in seen:
                problems.append(f"provider.hosts[{i}].{what}: {excerpt(getattr(h, what))} is also hosts[{seen[key]}]'s; "
                                f"each server once, with its own {what}")
            seen.setdefault(key, i)
    return problems


def ssh_port_clashes(spec: TierSpec, listed: list[BaremetalHost]) -> list[str]:
    """A host's SSH port that is also one of the ports tierkit serves on it."""
    from tierkit.spec import DRAIN_AGENT_PORT, HAPROXY_STATS_PORT, SSH_PORT

    serving = {spec.vllm_port: "vLLM's port", spec.serving.port: "the serving port"}
    if spec.tier == "failover":
        serving[HAPROXY_STATS_PORT] = "HAProxy's statistics port"
        serving[DRAIN_AGENT_PORT] = "the drain agent's port"
    return [f"provider.hosts[{i}].port: SSH on {h.port} clashes with {serving[h.port]}; give SSH's real port, or move serving.port"
            for i, h in enumerate(listed) if h.port in serving and h.port != SSH_PORT]


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
    api_key_required: ClassVar[bool] = True

    def allowed_sources(self, spec: TierSpec, hosts: list[Host]) -> list[str]:
        """The operator's machine (smoke test, clients) by default: vLLM's port off the failover
        tier, the VIP's (and each vLLM's) on it."""
        return [source_address(hosts[0].address)]

    def problems(self, spec: TierSpec) -> list[str]:
        listed = config_of(spec).hosts
        if len(listed) != spec.server_count:
            return [f"provider.hosts: {spec.tier} needs {spec.server_count} host(s), got {len(listed)}; "
                    f"list exactly {spec.server_count}"]
        found = unique_hosts(listed) + ssh_port_clashes(spec, listed)
        found += [p for i, h in enumerate(listed) if (p := key_file_problem(f"provider.hosts[{i}].key_path", h.key_path))]
        if spec.failover is None or found:
            return found
        vip = spec.failover.virtual_ip
        addrs = []
        for h in listed:
            try:
                addrs.append(ipaddress.IPv4Address(h.address))
            except ValueError:
                continue  # a host name: its subnet is unknown here
        # The role gives the VIP the hosts' /24 (failover_virtual_prefix); its gateway is unknown here.
        problem = vip_problem(vip, ipaddress.IPv4Network(f"{addrs[0] if addrs else vip}/24", strict=False), None, addrs)
        if problem:
            near = f"next to {addrs[0]}" if addrs else "in the hosts' subnet"
            return [f"failover.virtual_ip: {problem}; pick a free address {near}"]
        return []

    def provision(self, spec: TierSpec, ctx: StackContext, opts: pulumi.ResourceOptions) -> Provisioned:
        import pulumi

        return Provisioned(hosts=pulumi.Output.from_input([h.model_dump() for h in listed_hosts(spec)]))

    def hosts(self, spec: TierSpec) -> list[Host]:
        return listed_hosts(spec)
