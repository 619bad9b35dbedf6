"""The fake cloud the Pulumi program runs against under the SDK's mock runtime, and the shipped
stacks' variants (lab as shipped, bare metal, and the aws block each stack file carries)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from tierkit import program
from tierkit.providers.aws import PlacementError
from tierkit.rehearsal.runner import COMMAND
from tierkit.rehearsal.runtime import Backend, ProgramRun, Registration, run_program
from tierkit.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("single-gpu", "multi-gpu", "failover", "multi-server")
PROVIDERS = ("lab", "baremetal", "aws")
API_KEY = "sk-test-0123456789abcdef"
HF_TOKEN = "hf_test_abcdef0123456789"
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
VPC_CIDR = "172.31.0.0/16"
# Where each instance type is offered in the fake region: P5 in one zone only, as in many regions.
OFFERED = {"g6e.xlarge": ["us-east-1b", "us-east-1c", "us-east-1d"], "p5.48xlarge": ["us-east-1d"],
           "g7e.2xlarge": ZONES}
USER_SUBNETS = {"subnet-0aaaaaaaaaaaaaaa1": "us-east-1a", "subnet-0bbbbbbbbbbbbbbb2": "us-east-1b",
                "subnet-0ccccccccccccccc3": "us-east-1b", "subnet-0ddddddddddddddd4": "us-east-1c"}
CALIBRATED_FLOOR = 123.4
CALIBRATED_STREAM = 61.7


def stack_spec(stack: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    return copy.deepcopy(doc["config"]["tierkit:tier"])


def aws_block(stack: str) -> dict[str, Any]:
    """The stack file's commented aws variant, uncommented exactly as its instructions say: the
    lines from `#   tierkit:tier:` to the end marker, each without its leading `# `."""
    lines = (ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text().splitlines()
    start = lines.index("#   tierkit:tier:")
    end = next(i for i, line in enumerate(lines) if line.startswith("# --- aws variant (end)"))
    assert all(line.startswith("# ") or line == "#" for line in lines[start:end])
    return yaml.safe_load("\n".join(line[2:] for line in lines[start:end]))["tierkit:tier"]


def variant(stack: str, provider: str, keys: Path) -> dict[str, Any]:
    """The shipped stack on a provider: the lab as shipped; bare metal with the lab spec's
    provider swapped for two documentation addresses (and, on failover, a VIP beside them); aws
    as the stack file's aws block says, whole."""
    if provider == "aws":
        return aws_block(stack)
    spec = stack_spec(stack)
    servers = 2 if stack in ("failover", "multi-server") else 1
    if provider == "baremetal":
        spec["provider"] = {"kind": "baremetal", "hosts": [
            {"name": f"gpu{i + 1}", "address": f"192.0.2.{10 + i}", "user": "ubuntu", "key_path": str(keys / "id_ed25519")}
            for i in range(servers)
        ]}
        if stack == "failover":
            spec["failover"]["virtual_ip"] = "192.0.2.100"
        # The lab's tiny model exists only in the lab: real servers download a real one.
        spec["model"] = {"key": "llama-3.1-8b", "quantization": "bf16", "max_context": 8192}
    parse_spec(spec)  # every variant is a valid spec
    return spec


def host_key(name: str) -> str:
    """The host key a fake server presents (distinct per host)."""
    return "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + name.encode().hex().ljust(40, "0")[:40]


class FakeCloud(Backend):
    """Answers registrations and invokes as the providers and tierkit's verbs would."""

    def create(self, reg: Registration) -> tuple[str, dict[str, Any]]:
        if not reg.custom:
            return "", {}
        state = dict(reg.inputs)
        rid = f"{reg.name}-id"
        if reg.type == COMMAND:
            state["stdout"] = self.stdout(reg)
            state["stderr"] = ""
        elif reg.type == "aws:ec2/instance:Instance":
            n = int(reg.name.removeprefix("server"))
            rid = f"i-{n}"
            state |= {"public_ip": f"198.51.100.{n}", "private_ip": f"172.31.{n}.10"}
        elif reg.type == "aws:lb/loadBalancer:LoadBalancer":
            state |= {"dns_name": "tierkit-lb.elb.us-east-1.amazonaws.com", "arn": "arn:lb"}
        elif reg.type == "aws:lb/targetGroup:TargetGroup":
            state["arn"] = "arn:tg"
        elif reg.type == "aws:ec2/securityGroup:SecurityGroup":
            state["id"] = f"sg-{reg.name}"
            rid = state["id"]
        elif reg.type == "aws:ec2/keyPair:KeyPair":
            state["key_name"] = "tierkit-key"
        elif reg.type == "aws:ec2/placementGroup:PlacementGroup":
            state["name"] = f"tierkit-{reg.name}"
        return rid, state

    @staticmethod
    def stdout(reg: Registration) -> str:
        if reg.name == "lab":
            args = reg.plain("create").split()
            name, count = args[args.index("--name") + 1], int(args[args.index("--hosts") + 1])
            hosts = [{"name": f"{name}-{i + 1}", "address": f"10.77.40.{11 + i}", "port": 22, "user": "root",
                      "key_path": "/var/lib/tierkit/lab/id", "known_hosts": "/var/lib/tierkit/lab/known_hosts",
                      "netns": f"tk-{name}"} for i in range(count)]
            return json.dumps({"lab": name, "netns": f"tk-{name}", "subnet": "10.77.40.0/24", "hosts": hosts})
        if reg.name == "wait-ssh":
            args = reg.plain("create").split()
            pinned = args[args.index("--known-hosts") + 1]
            return json.dumps([{**h, "known_hosts": pinned, "host_key": host_key(h["name"])}
                               for h in json.loads(reg.plain("stdin"))])
        if reg.name == "calibrate":
            return json.dumps({"min_output_tok_s": CALIBRATED_FLOOR, "single_stream_tok_s": CALIBRATED_STREAM,
                               "statement": "figures come from a CPU rehearsal"})
        if reg.name == "smoke":
            return json.dumps({"passed": True, "completed": 48, "failed": 0, "output_throughput": 900.0,
                               "gates": [{"name": "output_throughput", "passed": True, "measured": 900.0,
                                          "op": ">=", "required": 1.0, "unit": "tok/s"}], "gate_source": "command line"})
        return "configured"

    def __init__(self, offered: dict[str, list[str]] | None = None, default_vpc: bool = True) -> None:
        self.offered = OFFERED if offered is None else offered
        self.default_vpc = default_vpc
        self.subnets_found: list[str] | None = None
        self.invokes: list[tuple[str, dict[str, Any]]] = []

    def invoke(self, token: str, given: dict[str, Any]) -> dict[str, Any]:
        self.invokes.append((token, given))
        if token == "aws:ec2/getVpcs:getVpcs":
            return {"ids": ["vpc-default"] if self.default_vpc else [], "id": "us-east-1"}
        if token == "aws:ec2/getVpc:getVpc":
            return {"id": given["id"], "cidrBlock": VPC_CIDR}
        if token == "aws:ec2/getSubnets:getSubnets":
            wanted = {f["name"]: f["values"] for f in given["filters"]}
            ids = wanted.get("subnet-id") or [f"subnet-{z}" for z in reversed(ZONES)]
            if self.subnets_found is not None:  # the VPC holds only these
                ids = [i for i in ids if i in self.subnets_found]
            return {"ids": ids, "id": "us-east-1"}
        if token == "aws:ec2/getSubnet:getSubnet":
            sid = given["id"]
            return {"id": sid, "availabilityZone": USER_SUBNETS.get(sid, sid.removeprefix("subnet-"))}
        if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            itype = given["filters"][0]["values"][0]
            zones = self.offered.get(itype, [])
            return {"locations": zones, "instanceTypes": [itype] * len(zones), "id": "us-east-1"}
        if token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-dlami-latest"}
        raise AssertionError(f"unexpected invoke {token}")


def run(spec: dict[str, Any] | Any, stack: str = "test", secrets: bool = True,
        cloud: FakeCloud | None = None) -> ProgramRun:
    config = {"tierkit:tier": json.dumps(spec)}
    secret_keys = []
    if secrets:
        config |= {"tierkit:apiKey": API_KEY, "tierkit:hfToken": HF_TOKEN}
        secret_keys = ["tierkit:apiKey", "tierkit:hfToken"]
    result = run_program(program.main, cloud or FakeCloud(), project="tierkit", stack=stack,
                         config=config, secret_keys=secret_keys)
    if result.error is not None and not isinstance(result.error, (program.ProgramError, PlacementError)):
        raise result.error
    return result


def parent_name(result: ProgramRun, reg: Registration) -> str:
    by_urn = {r.urn: r.name for r in result.registrations}
    return by_urn.get(reg.parent or "", "<stack>")


