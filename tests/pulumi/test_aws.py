"""The aws provider under Pulumi's mocks: each shipped stack's aws block, uncommented exactly as its
comment says, validated and deployed against a fake region (mock_cloud.FakeCloud), and the
network, AMI and failover rules. Nothing here reaches AWS: these are mocks, not a deploy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from mock_cloud import OFFERED, STACKS, USER_SUBNETS, VPC_CIDR, FakeCloud, aws_block, run

from tierkit import catalog, inventory, program, providers
from tierkit.hosts import HostList
from tierkit.providers.aws import INSTANCE_GPUS, PlacementError, root_volume_gib, zones_needed
from tierkit.rehearsal.runtime import ProgramRun
from tierkit.spec import parse_spec

INSTANCE = "aws:ec2/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


def instances(result: ProgramRun) -> list[Any]:
    return sorted(result.by_type(INSTANCE), key=lambda r: r.name)  # registration order varies


def test_each_aws_block_is_complete_and_consistent(keys: Path) -> None:
    blocks = {stack: parse_spec(aws_block(stack)) for stack in STACKS}
    for stack, spec in blocks.items():
        assert spec.tier == stack and spec.provider.kind == "aws"
        assert providers.problems(spec, "tierkit:tier") == [], stack
        itype = spec.provider.instance_type
        assert INSTANCE_GPUS[itype] == (spec.gpu.model, spec.gpu.count), f"{stack}: {itype} carries other GPUs"
        assert spec.model.hf_id and spec.model.hf_id == catalog.MODELS[spec.model.key].hf_id, "real weights"
        assert spec.failover is None
    multi = blocks["multi-gpu"]
    assert multi.provider.instance_type == "p5.48xlarge"
    assert (multi.gpu.model, multi.gpu.count, multi.tensor_parallel) == ("h100-sxm", 8, 8)
    assert blocks["single-gpu"].provider.instance_type.startswith("g6e.")
    assert blocks["failover"].server_count == 2
    split = blocks["multi-server"]
    assert (split.server_count, split.provider.instance_type, split.tensor_parallel, split.pipeline_parallel) == (
        2, "p5.48xlarge", 8, 2)


@pytest.mark.parametrize("stack", STACKS)
def test_aws_block_deploys(stack: str, keys: Path) -> None:
    spec_dict = aws_block(stack)
    spec = parse_spec(spec_dict)
    result = run(spec_dict)
    assert result.error is None
    port = spec.serving.port
    servers = instances(result)
    itype = spec.provider.instance_type
    assert [s.inputs["instanceType"] for s in servers] == [itype] * spec.server_count
    assert INSTANCE_GPUS[itype][1] == spec.gpu.count
    # Storage: 100 GiB + twice the BF16 checkpoint (the download), whatever the serving quantization.
    bf16_gib = spec.model_info.params_b * 1e9 * 2 / 2**30
    want_gib = math.ceil((100 + 2 * bf16_gib) / 10) * 10
    assert [s.inputs["rootBlockDevice"]["volumeSize"] for s in servers] == [want_gib] * spec.server_count
    assert all(s.inputs["metadataOptions"]["httpTokens"] == "required" for s in servers), "IMDSv2 only"
    assert all(s.inputs["ami"] == "ami-dlami-latest" and s.ignore_changes == ["ami"] for s in servers)
    # One copy per zone that offers the type (the fake region offers P5 in us-east-1d alone); a
    # split model's servers share one zone and a cluster placement group.
    zones = OFFERED[itype][: zones_needed(spec)]
    assert [s.inputs["subnetId"] for s in servers] == [f"subnet-{zones[n % len(zones)]}" for n in range(spec.server_count)]
    split = spec.tier == "multi-server"
    assert [s.inputs.get("placementGroup") for s in servers] == ["tierkit-cluster" if split else None] * spec.server_count
    # Security groups: SSH from the operator; the serving port from the load balancer and the peers
    # (a split model's servers: every unprivileged port, for its rendezvous and stages).
    ingress = [r.inputs for r in result.by_type(INGRESS)]
    on_servers = [r for r in ingress if r["securityGroupId"] == "sg-servers"]
    assert {(r["fromPort"], r.get("cidrIpv4"), r.get("referencedSecurityGroupId")) for r in on_servers} == {
        (22, "203.0.113.0/24", None), (port, None, "sg-lb"), (port, None, "sg-servers")} | (
        {(1024, None, "sg-servers")} if split else set())
    assert [(r["fromPort"], r["cidrIpv4"]) for r in ingress if r["securityGroupId"] == "sg-lb"] == [(port, "203.0.113.0/24")]
    # The NLB: listener and targets on the serving port, every copy's server a target (a split
    # model's head alone), /health checked.
    lb = result.by_type("aws:lb/loadBalancer:LoadBalancer")[0].inputs
    assert lb["loadBalancerType"] == "network" and lb["subnets"] == [f"subnet-{z}" for z in zones]
    listener = result.by_type("aws:lb/listener:Listener")[0].inputs
    assert listener["port"] == port
    tg = result.by_type("aws:lb/targetGroup:TargetGroup")[0].inputs
    assert (tg["port"], tg["targetType"], tg["preserveClientIp"]) == (port, "instance", "false")
    assert {k: tg["healthCheck"][k] for k in ("protocol", "path", "port", "matcher")} == {
        "protocol": "HTTP", "path": "/health", "port": "traffic-port", "matcher": "200"}
    attachments = result.by_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    assert sorted((a.inputs["targetId"], a.inputs["port"]) for a in attachments) == [
        (f"i-{n + 1}", port) for n in range(spec.replicas)]
    # The backends listen where the security group lets the NLB in, and admit the VPC.
    hosts = HostList.validate_python(result.exports["hosts"].value)
    assert [h.private_address for h in hosts] == [f"172.31.{n + 1}.10" for n in range(spec.server_count)]
    rendered = inventory.render(spec, hosts)
    assert rendered.group_vars["vllm_port"] == port
    assert VPC_CIDR in rendered.group_vars["vllm_allowed_sources"]
    assert rendered.groups["failover"] == [] and "failover_virtual_ip" not in rendered.group_vars
    if spec.server_count > 1:
        assert {h.private_address for h in hosts} <= set(rendered.group_vars["vllm_allowed_sources"])


def test_root_volume_grows_with_the_checkpoint(keys: Path) -> None:
    small, big = parse_spec(aws_block("single-gpu")), parse_spec(aws_block("multi-gpu"))
    assert root_volume_gib(small) < root_volume_gib(big)
    assert root_volume_gib(big) == 370, "70.6B at BF16 is 131.5 GiB: 100 + 2 x 131.5, rounded up to 10"


def test_an_explicit_ami_is_followed(keys: Path) -> None:
    spec = aws_block("single-gpu")
    spec["provider"]["ami"] = "ami-0123456789abcdef0"
    cloud = FakeCloud()
    server = instances(run(spec, cloud=cloud))[0]
    assert server.inputs["ami"] == "ami-0123456789abcdef0" and server.ignore_changes == []
    assert "aws:ec2/getAmi:getAmi" not in [token for token, _ in cloud.invokes]


def test_notes_name_the_ami_and_how_to_move(keys: Path) -> None:
    notes = run(aws_block("single-gpu")).exports["notes"].value
    assert any("ami-dlami-latest" in n and "set provider.ami" in n for n in notes)


def test_no_default_vpc_is_one_line(keys: Path) -> None:
    result = run(aws_block("single-gpu"), cloud=FakeCloud(default_vpc=False))
    assert isinstance(result.error, PlacementError)
    assert result.error.problems == ["tierkit:tier.provider.vpc_id: us-east-1 has no default VPC; set provider.vpc_id "
                                     "and provider.subnet_ids to a VPC and public subnets of yours"]
    assert not result.by_type(INSTANCE)


def test_fewer_offering_zones_than_servers_is_refused(keys: Path) -> None:
    result = run(aws_block("failover"), cloud=FakeCloud(offered={"g6e.xlarge": ["us-east-1c"]}))
    assert isinstance(result.error, PlacementError)
    (line,) = result.error.problems
    assert line.startswith("tierkit:tier.provider: g6e.xlarge is offered in 1 zone(s) of us-east-1 (us-east-1c) "
                           "and the usable subnets cover us-east-1c (subnet-us-east-1c); 2 server(s) need 2 zone(s)")


def test_own_vpc_and_subnets(keys: Path) -> None:
    spec = aws_block("failover")
    spec["provider"] |= {"vpc_id": "vpc-0123456789abcdef0", "subnet_ids": list(USER_SUBNETS)}
    cloud = FakeCloud()
    result = run(spec, cloud=cloud)
    assert result.error is None
    # us-east-1a does not offer g6e.xlarge; the second us-east-1b subnet is a zone already used.
    assert [s.inputs["subnetId"] for s in instances(result)] == ["subnet-0bbbbbbbbbbbbbbb2", "subnet-0ddddddddddddddd4"]
    (query,) = [args for token, args in cloud.invokes if token == "aws:ec2/getSubnets:getSubnets"]
    assert {f["name"]: f["values"] for f in query["filters"]} == {
        "vpc-id": ["vpc-0123456789abcdef0"], "subnet-id": list(USER_SUBNETS)}
    assert {r.inputs["vpcId"] for r in result.by_type("aws:ec2/securityGroup:SecurityGroup")} == {"vpc-0123456789abcdef0"}


def test_own_subnets_follow_the_spec_order_and_must_exist(keys: Path) -> None:
    spec = aws_block("failover")
    spec["provider"] |= {"vpc_id": "vpc-0123456789abcdef0",
                         "subnet_ids": ["subnet-0ddddddddddddddd4", "subnet-0ccccccccccccccc3"]}
    result = run(spec)
    assert [s.inputs["subnetId"] for s in instances(result)] == ["subnet-0ddddddddddddddd4", "subnet-0ccccccccccccccc3"]
    cloud = FakeCloud()
    cloud.subnets_found = ["subnet-0ddddddddddddddd4"]
    result = run(spec, cloud=cloud)
    assert isinstance(result.error, PlacementError)
    assert result.error.problems == ["tierkit:tier.provider.subnet_ids: subnet-0ccccccccccccccc3 not found in "
                                     "vpc-0123456789abcdef0; list subnets of provider.vpc_id"]


def test_a_split_model_needs_one_zone_a_pair_two(keys: Path) -> None:
    """One subnet holds a multi-server model's servers; the failover pair needs two zones."""
    one = {"vpc_id": "vpc-0123456789abcdef0", "subnet_ids": ["subnet-0ddddddddddddddd4"]}
    split = aws_block("multi-server")
    split["provider"] |= one
    result = run(split, cloud=FakeCloud(offered={"p5.48xlarge": ["us-east-1c"]}))
    assert result.error is None
    assert [s.inputs["subnetId"] for s in instances(result)] == ["subnet-0ddddddddddddddd4"] * 2
    pair = aws_block("failover")
    pair["provider"] |= one
    refused = run(pair)
    assert isinstance(refused.error, program.ProgramError)
    assert refused.error.problems == ["tierkit:tier.provider.subnet_ids: 2 servers need 2 subnets in distinct zones, "
                                      "got 1; list one subnet per server"]


def test_default_vpc_uses_its_default_subnets(keys: Path) -> None:
    cloud = FakeCloud()
    run(aws_block("single-gpu"), cloud=cloud)
    (query,) = [args for token, args in cloud.invokes if token == "aws:ec2/getSubnets:getSubnets"]
    assert {f["name"]: f["values"] for f in query["filters"]} == {"vpc-id": ["vpc-default"], "default-for-az": ["true"]}


@pytest.mark.parametrize(
    ("mutate", "line"),
    [
        (lambda s: s.update(failover={"virtual_ip": "172.31.0.100"}),
         "tierkit:tier.failover: aws has no virtual IP (a VPC does not carry VRRP's floating address); remove the "
         "failover section: the network load balancer health-checks both servers and fronts them"),
        (lambda s: s["provider"].update(subnet_ids=["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]),
         "tierkit:tier.provider.subnet_ids: set provider.vpc_id to the subnets' VPC too"),
        (lambda s: s["provider"].update(subnet_ids=["subnet-1"]),
         "tierkit:tier.provider.subnet_ids[0]: 'subnet-1' is not in the form this field takes"),
        (lambda s: s["provider"].update(ssh_cidr="203.0.113.5/24"),
         "tierkit:tier.provider.ssh_cidr:"),
    ],
)
def test_aws_spec_mistakes_fail_before_anything(mutate: Any, line: str, keys: Path) -> None:
    spec = aws_block("failover")
    mutate(spec)
    result = run(spec)
    assert isinstance(result.error, program.ProgramError)
    assert result.error.problems[0].startswith(line), result.error.problems
    assert result.registrations == []


def test_instance_type_with_other_gpus_is_refused(keys: Path) -> None:
    spec = aws_block("multi-gpu")
    spec["gpu"]["count"] = 4
    spec["serving"]["tensor_parallel"] = 4
    result = run(spec)
    assert isinstance(result.error, program.ProgramError)
    assert result.error.problems == [
        "tierkit:tier.gpu: p5.48xlarge carries 8x h100-sxm, the spec asks for 4x h100-sxm (the driver check would "
        "fail); set gpu: {model: h100-sxm, count: 8} or another instance type"]


def test_without_a_mapped_instance_type_fails_before_anything(keys: Path) -> None:
    spec = aws_block("single-gpu")
    del spec["provider"]["instance_type"]
    spec["gpu"] = {"model": "rtx-pro-6000", "count": 1}
    result = run(spec)
    assert isinstance(result.error, program.ProgramError)
    assert result.error.problems[0].startswith("tierkit:tier.provider.instance_type: no EC2 instance type")
    assert result.registrations == []
    spec["provider"]["instance_type"] = "g7e.2xlarge"
    assert run(spec).by_type(INSTANCE)[0].inputs["instanceType"] == "g7e.2xlarge"
