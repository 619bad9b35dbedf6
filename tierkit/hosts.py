"""Hosts as every client sees them: the contract between providers and everything after them.

A provider (lab, baremetal, aws) produces a list of `Host`; `tierkit wait-ssh`, the Ansible
inventory, `tierkit lab ssh` and the smoke test consume it. A host in the lab is reachable only
from inside the lab's switch network namespace: `netns` names it, and clients run there.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from tierkit.errors import TierkitError


class Host(BaseModel):
    """One server tierkit configures."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="inventory hostname")
    address: str = Field(description="IP address or DNS name SSH and the smoke test use")
    private_address: str | None = Field(
        None, description="address peers and a load balancer reach the host at inside its network; None: address"
    )
    private_network: str | None = Field(
        None, description="CIDR of the host's private network (a VPC): the peers and load balancer there may reach vLLM"
    )
    port: int = Field(22, ge=1, le=65535, description="SSH port")
    user: str = Field("root", description="SSH user (root, or a user with sudo)")
    key_path: str = Field(description="private key file for SSH")
    known_hosts: str | None = Field(
        None, description="known_hosts file holding this host's pinned key (verified, never skipped)"
    )
    netns: str | None = Field(
        None, description="network namespace to run clients in (lab hosts); None: the machine's own"
    )

    @field_validator("private_network")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        """A CIDR (it lands in the servers' firewall)."""
        return None if value is None else str(ipaddress.ip_network(value, strict=False))

    @property
    def inside_address(self) -> str:
        """Where peers and a load balancer in the host's network reach it."""
        return self.private_address or self.address


HostList = TypeAdapter(list[Host])


def load_hosts(path: str | Path) -> list[Host]:
    """Read a hosts JSON file (as `tierkit lab up --json` writes), or fail with one line."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError:
        raise TierkitError(f"--hosts: {p} does not exist; pass the file `tierkit lab up --json` wrote") from None
    except json.JSONDecodeError as exc:
        raise TierkitError(f"--hosts: {p} is not JSON ({exc.msg} at line {exc.lineno}); fix the file") from None
    if isinstance(raw, dict) and "hosts" in raw:
        raw = raw["hosts"]
    try:
        return HostList.validate_python(raw)
    except Exception as exc:  # pydantic.ValidationError: keep it to one line
        raise TierkitError(f"--hosts: {p} is not a list of hosts ({str(exc).splitlines()[0]}); fix the file") from None
