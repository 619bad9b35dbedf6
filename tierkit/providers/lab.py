"""The lab provider: simulated GPU servers on this machine (`tierkit lab up` / `tierkit lab down`).

One `local.Command` creates the lab and its delete tears it down. Its stdout is the JSON that
`tierkit lab up --json` prints; the hosts in it carry the lab's known_hosts and the network
namespace clients must run in.
"""

from __future__ import annotations

import json

import pulumi
from pulumi_command import local

from tierkit.hosts import HostList
from tierkit.providers import Provisioned, StackContext
from tierkit.spec import LabProvider, TierSpec


def problems(spec: TierSpec) -> list[str]:
    return []


def lab_up_args(spec: TierSpec) -> list[str]:
    """`tierkit lab up ...` for this spec (after the program name)."""
    p = spec.provider
    assert isinstance(p, LabProvider)
    args = ["lab", "up", "--name", p.name, "--hosts", str(spec.server_count), "--gpu", spec.gpu.model,
            "--gpus-per-host", str(spec.gpu.count), "--topology", p.topology]
    if p.subnet is not None:
        args += ["--subnet", str(p.subnet)]
    for fault in p.faults:
        args += ["--fault", fault]
    # --runtime: a lab made from nothing builds the vLLM wheelhouse and the tiny model first.
    return [*args, "--runtime", "--json"]


def hosts_from_lab_json(stdout: str) -> list[dict]:
    """The hosts of `tierkit lab up --json` output, validated against the Host contract."""
    doc = json.loads(stdout)
    return [h.model_dump() for h in HostList.validate_python(doc["hosts"])]


def provision(spec: TierSpec, ctx: StackContext, opts: pulumi.ResourceOptions) -> Provisioned:
    p = spec.provider
    assert isinstance(p, LabProvider)
    lab = local.Command(
        "lab",
        create=ctx.command(*lab_up_args(spec)),
        delete=ctx.command("lab", "down", p.name),
        logging=local.Logging.STDERR,  # stdout is the JSON the program reads; progress is on stderr
        dir=str(ctx.root),
        # A changed lab is a new lab of the same name: the old one goes first (create-before-delete
        # would make nothing new, then tear the lab down).
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
    )
    return Provisioned(hosts=lab.stdout.apply(hosts_from_lab_json), resources=[lab])
