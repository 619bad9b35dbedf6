"""The bare-metal provider: adopts servers that already exist, as the spec lists them.

It registers nothing: the hosts come straight from the spec. Their SSH host keys are pinned by
the Ready step (`tierkit wait-ssh`) into the stack's known_hosts on first contact.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from tierkit.hosts import Host
from tierkit.providers import Provisioned, StackContext, key_file_problem
from tierkit.spec import SPEC_KEY, BaremetalProvider, TierSpec


# Servers on a real network: vLLM refuses requests without the API key.
API_KEY_REQUIRED = True


def problems(spec: TierSpec) -> list[str]:
    """Each host's SSH key must be readable here (Ready and Ansible log in with it)."""
    p = spec.provider
    assert isinstance(p, BaremetalProvider)
    found = (key_file_problem(f"{SPEC_KEY}.provider.hosts[{i}].key_path", h.key_path) for i, h in enumerate(p.hosts))
    return [problem for problem in found if problem]


def provision(spec: TierSpec, ctx: StackContext, opts: pulumi.ResourceOptions) -> Provisioned:
    p = spec.provider
    assert isinstance(p, BaremetalProvider)
    hosts = [
        Host(name=h.name, address=h.address, port=h.port, user=h.user, key_path=str(Path(h.key_path).expanduser()))
        for h in p.hosts
    ]
    return Provisioned(hosts=pulumi.Output.from_input([h.model_dump() for h in hosts]))
