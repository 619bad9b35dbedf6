"""The aws provider: GPU instances on EC2, with pulumi-aws (needs the Pulumi CLI to run for real).

What it makes, all in the spec's region:
- one instance per server, in distinct availability zones (two for the failover tier), from the
  latest Deep Learning Base AMI (looked up) or the spec's AMI, with a root volume sized from the
  model, and an instance type from the GPU set (INSTANCE_TYPES) or the spec;
- a key pair from the spec's public key;
- a network load balancer in front of the servers: the endpoint clients and the smoke test use;
- security groups: SSH to the servers only from `ssh_cidr`; the vLLM port only from the peer
  (the servers' own group) and the load balancer; the load balancer's port only from `ssh_cidr`
  (the operator's network; widen that rule for production clients).
Hosts log in as `ubuntu` (the AMI's user); Ready pins their host keys on first contact.
"""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from tierkit import planner
from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.providers.base import Provisioned, RealServers, StackContext, key_file_problem
from tierkit.safe_yaml import excerpt
from tierkit.textrules import LocalPath, StrictModel

if TYPE_CHECKING:
    import pulumi

    from tierkit.spec import TierSpec

# GPU set (catalog key, GPUs per server) -> EC2 instance type. Source: AWS's accelerated-computing
# instance pages: G6e = L40S 48 GB (xlarge 1, 12xlarge 4, 48xlarge 8); P4de = 8x A100 80 GB
# (P4d carries the 40 GB A100, which the catalog does not list); P5 = 8x H100 80 GB;
# P5en = 8x H200 141 GB.
INSTANCE_TYPES: dict[tuple[str, int], str] = {
    ("l40s", 1): "g6e.xlarge",
    ("l40s", 4): "g6e.12xlarge",
    ("l40s", 8): "g6e.48xlarge",
    ("a100-80g-sxm", 8): "p4de.24xlarge",
    ("h100-sxm", 8): "p5.48xlarge",
    ("h200", 8): "p5en.48xlarge",
}

# The DLAMI for x86 GPU instances (G4dn..P5en): "Deep Learning Base OSS Nvidia Driver GPU AMI
# (Ubuntu 22.04) YYYYMMDD", owned by Amazon (AWS DLAMI release notes).
DLAMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
AMI_USER = "ubuntu"

# Root volume: tierkit's allowance of 100 GiB for the AMI's CUDA stacks, vLLM's venv and logs,
# plus twice the weights (the Hugging Face download, and room for a second revision or vLLM's
# compile caches), rounded up to 10 GiB.
ROOT_BASE_GIB = 100
ROOT_WEIGHTS_FACTOR = 2.0




class AwsConfig(StrictModel):
    """EC2 GPU instances (needs the Pulumi CLI; the rehearsal refuses cloud resources)."""

    kind: Literal["aws"]
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$", description="e.g. us-east-1")
    instance_type: str | None = Field(None, pattern=r"^[a-z][a-z0-9-]{1,15}\.[a-z0-9]{2,16}$",
                                      description="default: from the GPU set (catalog map)")
    ami: str | None = Field(None, pattern=r"^ami-[0-9a-f]{8,17}$", description="default: latest Deep Learning Base AMI (lookup)")
    ssh_cidr: str = Field(description="CIDR allowed to reach SSH, e.g. 203.0.113.0/24")
    public_key_path: LocalPath = Field(description="SSH public key registered as the instance key pair")
    private_key_path: LocalPath = Field(description="matching private key, used by Ready and Ansible")
    availability_zones: list[Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}[a-z]$")]] | None = Field(
        None, max_length=8, description="default: the region's first two")

    @field_validator("ssh_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError:
            raise ValueError(f"{excerpt(value)} is not a CIDR block; give the operator's network, e.g. 203.0.113.0/24") from None
        if network.prefixlen == 0:
            raise ValueError(f"{value} opens SSH and the endpoint to the whole internet; give the operator's network, e.g. 203.0.113.0/24")
        return value


def config_of(spec: TierSpec) -> AwsConfig:
    p = spec.provider
    assert isinstance(p, AwsConfig)
    return p


def instance_type(spec: TierSpec) -> str | None:
    return config_of(spec).instance_type or INSTANCE_TYPES.get((spec.gpu.model, spec.gpu.count))


def root_volume_gib(spec: TierSpec) -> int:
    weights_gib = planner.weights_bytes(spec.model_info, spec.model.quantization) / planner.GIB
    return int(math.ceil((ROOT_BASE_GIB + ROOT_WEIGHTS_FACTOR * weights_gib) / 10) * 10)


# The IPv4 block of every region's default VPC, where the servers and the load balancer live
# (https://docs.aws.amazon.com/vpc/latest/userguide/default-vpc.html).
DEFAULT_VPC_CIDR = "172.31.0.0/16"


class AwsProvider(RealServers):
    kind: ClassVar[str] = "aws"
    config: ClassVar[type[BaseModel]] = AwsConfig
    load_balancer: ClassVar[bool] = True
    api_key_required: ClassVar[bool] = True

    def allowed_sources(self, spec: TierSpec, hosts: list[Host]) -> list[str]:
        """The VPC (the load balancer and its health checks) and the operator's ssh_cidr."""
        return [DEFAULT_VPC_CIDR, config_of(spec).ssh_cidr]

    def problems(self, spec: TierSpec) -> list[str]:
        p = config_of(spec)
        found = []
        if instance_type(spec) is None:
            known = ", ".join(f"{n}x {g}" for g, n in INSTANCE_TYPES)
            found.append(
                f"provider.instance_type: no EC2 instance type in tierkit's map carries "
                f"{spec.gpu.count}x {spec.gpu.model} (mapped: {known}); set provider.instance_type"
            )
        zones = p.availability_zones
        if zones is not None and len(set(zones)) < spec.server_count:
            found.append(
                f"provider.availability_zones: {spec.server_count} servers need "
                f"{spec.server_count} distinct zones, got {zones}; list one zone per server"
            )
        for key in ("public_key_path", "private_key_path"):
            problem = key_file_problem(f"provider.{key}", getattr(p, key))
            if problem:
                found.append(problem)
        return found

    def provision(self, spec: TierSpec, ctx: StackContext, opts: pulumi.ResourceOptions) -> Provisioned:
        import pulumi
        import pulumi_aws as aws

        p = config_of(spec)
        port = spec.serving.port
        region = p.region
        invoke = pulumi.InvokeOutputOptions(parent=opts.parent)
        tags = {"tierkit-stack": ctx.stack}

        vpc = aws.ec2.get_vpc_output(default=True, region=region, opts=invoke)
        zones = (
            pulumi.Output.from_input(p.availability_zones)
            if p.availability_zones
            else aws.get_availability_zones_output(state="available", region=region, opts=invoke).names
        )
        ami = p.ami or aws.ec2.get_ami_output(
            most_recent=True,
            owners=["amazon"],
            filters=[
                aws.ec2.GetAmiFilterArgs(name="name", values=[DLAMI_NAME]),
                aws.ec2.GetAmiFilterArgs(name="architecture", values=["x86_64"]),
            ],
            region=region,
            opts=invoke,
        ).id
        subnets = [
            aws.ec2.get_subnet_output(
                vpc_id=vpc.id, availability_zone=zones.apply(lambda z, i=i: z[i]), default_for_az=True,
                region=region, opts=invoke,
            ).id
            for i in range(spec.server_count)
        ]

        key = aws.ec2.KeyPair(
            "key", public_key=Path(p.public_key_path).expanduser().read_text().strip(), region=region, tags=tags, opts=opts
        )
        servers_sg = aws.ec2.SecurityGroup(
            "servers", vpc_id=vpc.id, description=f"tierkit {ctx.stack}: GPU servers", region=region, tags=tags, opts=opts
        )
        lb_sg = aws.ec2.SecurityGroup(
            "lb", vpc_id=vpc.id, description=f"tierkit {ctx.stack}: load balancer", region=region, tags=tags, opts=opts
        )
        rule = dict(region=region, opts=opts)
        aws.vpc.SecurityGroupIngressRule("ssh", security_group_id=servers_sg.id, ip_protocol="tcp", from_port=22,
                                         to_port=22, cidr_ipv4=p.ssh_cidr, description="SSH from the operator", **rule)
        aws.vpc.SecurityGroupIngressRule("vllm-from-peer", security_group_id=servers_sg.id, ip_protocol="tcp",
                                         from_port=port, to_port=port, referenced_security_group_id=servers_sg.id,
                                         description="vLLM from the peer server", **rule)
        if spec.tier == "multi-server":  # one model over the servers: rendezvous, message queues, gloo/NCCL
            aws.vpc.SecurityGroupIngressRule("cluster-from-peers", security_group_id=servers_sg.id, ip_protocol="tcp",
                                             from_port=1024, to_port=65535, referenced_security_group_id=servers_sg.id,
                                             description="multi-node vLLM between the servers", **rule)
        aws.vpc.SecurityGroupIngressRule("vllm-from-lb", security_group_id=servers_sg.id, ip_protocol="tcp",
                                         from_port=port, to_port=port, referenced_security_group_id=lb_sg.id,
                                         description="vLLM from the load balancer", **rule)
        aws.vpc.SecurityGroupEgressRule("servers-out", security_group_id=servers_sg.id, ip_protocol="-1",
                                        cidr_ipv4="0.0.0.0/0", description="packages and model downloads", **rule)
        aws.vpc.SecurityGroupIngressRule("lb-in", security_group_id=lb_sg.id, ip_protocol="tcp", from_port=port,
                                         to_port=port, cidr_ipv4=p.ssh_cidr, description="clients (the operator's network)",
                                         **rule)
        aws.vpc.SecurityGroupEgressRule("lb-to-servers", security_group_id=lb_sg.id, ip_protocol="tcp",
                                        from_port=port, to_port=port, referenced_security_group_id=servers_sg.id,
                                        description="load balancer to vLLM", **rule)

        instances = [
            aws.ec2.Instance(
                f"server{i + 1}",
                ami=ami,
                instance_type=instance_type(spec),
                subnet_id=subnets[i],
                vpc_security_group_ids=[servers_sg.id],
                key_name=key.key_name,
                associate_public_ip_address=True,
                root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                    volume_size=root_volume_gib(spec), volume_type="gp3", delete_on_termination=True
                ),
                region=region,
                tags={**tags, "Name": f"tierkit-{ctx.stack}-server{i + 1}"},
                opts=opts,
            )
            for i in range(spec.server_count)
        ]

        lb = aws.lb.LoadBalancer("lb", load_balancer_type="network", internal=False, subnets=subnets,
                                 security_groups=[lb_sg.id], region=region, tags=tags, opts=opts)
        targets = aws.lb.TargetGroup(
            "vllm", port=port, protocol="TCP", vpc_id=vpc.id, target_type="instance",
            health_check=aws.lb.TargetGroupHealthCheckArgs(protocol="HTTP", path="/health", port="traffic-port",
                                                           matcher="200", interval=10, healthy_threshold=2,
                                                           unhealthy_threshold=2),
            region=region, tags=tags, opts=opts,
        )
        for i, inst in enumerate(instances[: spec.replicas]):  # a split model answers on its head only
            aws.lb.TargetGroupAttachment(f"vllm-server{i + 1}", target_group_arn=targets.arn, target_id=inst.id,
                                         port=port, region=region, opts=opts)
        aws.lb.Listener("vllm", load_balancer_arn=lb.arn, port=port, protocol="TCP",
                        default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=targets.arn)],
                        region=region, tags=tags, opts=opts)

        key_path = str(Path(p.private_key_path).expanduser())
        hosts = pulumi.Output.all(*[inst.public_ip for inst in instances]).apply(
            lambda ips: [
                Host(name=f"server{i + 1}", address=ip, user=AMI_USER, key_path=key_path).model_dump()
                for i, ip in enumerate(ips)
            ]
        )
        endpoint = pulumi.Output.concat("http://", lb.dns_name, f":{port}")
        return Provisioned(hosts=hosts, endpoint=endpoint, resources=[*instances])

    def hosts(self, spec: TierSpec) -> list[Host]:
        raise TierkitError("--hosts: aws hosts come from the stack's outputs; pass --hosts FILE")
