"""Hosts as every client sees them: the contract between providers and everything after them.

A provider (lab, baremetal, aws) produces a list of `Host`; `tierkit wait-ssh`, the Ansible
inventory, `tierkit lab ssh` and the smoke test consume it. A host in the lab is reachable only
from inside the lab's switch network namespace: `netns` names it, and clients run there.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tierkit.errors import TierkitError
from tierkit.safe_yaml import read_text
from tierkit.textrules import HostAddress, HostName, PosixUser


class Host(BaseModel):
    """One server tierkit configures."""

    model_config = ConfigDict(extra="forbid")

    name: HostName = Field(description="inventory hostname")
    address: HostAddress = Field(description="IP address or DNS name SSH and the smoke test use")
    port: int = Field(22, ge=1, le=65535, strict=True, description="SSH port")
    user: PosixUser = Field("root", description="SSH user (root, or a user with sudo)")
    key_path: str = Field(description="private key file for SSH")
    known_hosts: str | None = Field(
        None, description="known_hosts file holding this host's pinned key (verified, never skipped)"
    )
    netns: str | None = Field(
        None, description="network namespace to run clients in (lab hosts); None: the machine's own"
    )


HostList = TypeAdapter(list[Host])


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
