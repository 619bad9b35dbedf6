"""Hosts as every client sees them: the contract between providers and everything after them.

A provider (lab, baremetal, aws) produces a list of `Host`; `tierkit wait-ssh`, the Ansible
inventory, `tierkit lab ssh` and the smoke test consume it. A host in the lab is reachable only
from inside the lab's switch network namespace: `netns` names it, and clients run there.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from tierkit.errors import TierkitError
from tierkit.safe_yaml import MAX_BYTES, read_text
from tierkit.textrules import HostAddress, HostName, PosixUser


class Host(BaseModel):
    """One server tierkit configures."""

    model_config = ConfigDict(extra="forbid")

    name: HostName = Field(description="inventory hostname")
    address: HostAddress = Field(description="IP address or DNS name SSH and the smoke test use")
    private_address: HostAddress | None = Field(
        None, description="address peers and a load balancer reach the host at inside its network; None: address"
    )
    private_network: str | None = Field(
        None, description="CIDR of the host's private network (a VPC): the peers and load balancer there may reach vLLM"
    )
    port: int = Field(22, ge=1, le=65535, strict=True, description="SSH port")
    user: PosixUser = Field("root", description="SSH user (root, or a user with sudo)")
    key_path: str = Field(description="private key file for SSH")
    known_hosts: str | None = Field(
        None, description="known_hosts file holding this host's pinned key (verified, never skipped)"
    )
    netns: str | None = Field(
        None, description="network namespace to run clients in (lab hosts); None: the machine's own"
    )
    host_key: str | None = Field(
        None, pattern=r"^[a-z0-9-]+(@[a-z0-9.-]+)? [A-Za-z0-9+/]+={0,3}$",
        description="the host's pinned SSH key, `TYPE BASE64` (Readiness's output); wins over known_hosts",
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


def read_hosts(source: str | Path) -> list[Host]:
    """Hosts from a JSON file, or from standard input when `source` is `-`."""
    if str(source) != "-":
        return load_hosts(source)
    text = sys.stdin.read(MAX_BYTES + 1)
    if len(text) > MAX_BYTES:
        raise TierkitError(f"--hosts: standard input is larger than {MAX_BYTES // 1024} KiB; pipe the hosts JSON "
                           f"`tierkit lab up --json` or `tierkit wait-ssh --json` prints")
    try:
        raw = json.loads(text)
        return HostList.validate_python(raw["hosts"] if isinstance(raw, dict) and "hosts" in raw else raw)
    except RecursionError:
        raise TierkitError("--hosts: standard input nests too deeply; pipe the hosts JSON `tierkit lab up --json` prints") from None
    except ValueError as exc:
        raise TierkitError(f"--hosts: standard input is not a hosts JSON list ({str(exc).splitlines()[0]}); "
                           f"pipe what `tierkit lab up --json` or `tierkit wait-ssh --json` prints") from None


def load_hosts(path: str | Path) -> list[Host]:
    """Read a hosts JSON file (as `tierkit lab up --json` writes), or fail with one line."""
    p = Path(path)
    try:
        raw = json.loads(read_text(p, kind="hosts JSON file (as `tierkit lab up --json` writes)"))
    except FileNotFoundError:
        raise TierkitError(f"--hosts: {p} does not exist; pass the file `tierkit lab up --json` wrote") from None
    except TierkitError as exc:
        raise TierkitError(*(f"--hosts: {problem}" for problem in exc.problems)) from None
    except json.JSONDecodeError as exc:
        raise TierkitError(f"--hosts: {p} is not JSON ({exc.msg} at line {exc.lineno}); fix the file") from None
    except RecursionError:
        raise TierkitError(f"--hosts: {p} nests too deeply; pass the file `tierkit lab up --json` wrote") from None
    if isinstance(raw, dict) and "hosts" in raw:
        raw = raw["hosts"]
    try:
        return HostList.validate_python(raw)
    except ValidationError as exc:  # one line per problem, each naming the host and field
        raise TierkitError(*(f"--hosts: {p}: {'.'.join(map(str, e['loc'])) or 'hosts'}: {str(e['msg'])[:160]}; fix the file"
                             for e in exc.errors())) from None
