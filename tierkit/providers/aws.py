"""The aws provider: GPU instances on EC2, with pulumi-aws (needs the Pulumi CLI to run for real).

What it makes, all in the spec's region (docs/aws.md says why each choice, with sources):
- one instance per server, each in its own availability zone among those that offer the instance
  type (`get_instance_type_offerings`), in the spec's VPC and subnets or the region's default VPC;
  IMDSv2 required; a root volume sized on the checkpoint that is downloaded (BF16);
- the AMI: the spec's `ami`, or the Deep Learning Base AMI current at the first `up`, then kept
  (`ignore_changes`), so a new DLAMI release never replaces running servers;
- a key pair from the spec's public key;
- a network load balancer in front of the servers (the endpoint), targeting each instance on the
  serving port and health-checking vLLM's `/health` there; on the failover tier it is the
  failover: no keepalived, no virtual IP (a VPC does not carry VRRP's floating address);
- security groups: SSH to the servers only from `ssh_cidr`; the vLLM port only from the load
  balancer and the peer servers; the load balancer's port only from `ssh_cidr`.
Hosts log in as `ubuntu` (the AMI's user) on their public address; peers and the load balancer
use private addresses, and each server's firewall admits the VPC's CIDR (the load balancer's
private addresses: client IP preservation is off).
"""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from tierkit import catalog
from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.providers.base import Provisioned, RealServers, StackContext, key_file_problem
from tierkit.safe_yaml import excerpt
from tierkit.textrules import LocalPath, StrictModel

if TYPE_CHECKING:
    import pulumi

    from tierkit.spec import TierSpec

GIB = 1024**3

# EC2 instance type -> (catalog GPU, GPUs per instance). Source: AWS's accelerated-computing
# instance pages: G6e = L40S 48 GB (xlarge 1, 12xlarge 4, 48xlarge 8); P4de = 8x A100 80 GB
# (P4d carries the 40 GB A100, which the catalog does not list); P5 = 8x H100 80 GB;
# P5en = 8x H200 141 GB.
INSTANCE_GPUS: dict[str, tuple[str, int]] = {
    "g6e.xlarge": ("l40s", 1),
    "g6e.12xlarge": ("l40s", 4),
    "g6e.48xlarge": ("l40s", 8),
    "p4de.24xlarge": ("a100-80g-sxm", 8),
    "p5.48xlarge": ("h100-sxm", 8),
    "p5en.48xlarge": ("h200", 8),
}
INSTANCE_TYPES: dict[tuple[str, int], str] = {gpus: itype for itype, gpus in INSTANCE_GPUS.items()}

# The DLAMI for x86 GPU instances (G4dn..P5en): "Deep Learning Base OSS Nvidia Driver GPU AMI
# (Ubuntu 22.04) YYYYMMDD", owned by Amazon (AWS DLAMI release notes).
DLAMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
AMI_USER = "ubuntu"

# Root volume: tierkit's allowance of 100 GiB for the AMI's CUDA stacks, vLLM's venv and logs,
# plus twice the checkpoint vLLM downloads (the Hugging Face cache, and room for a second
# revision or vLLM's compile caches), rounded up to 10 GiB. The checkpoint is counted at BF16:
# fp8 and int8 serving quantize a BF16 checkpoint when vLLM loads it, so the download is the
# BF16 size whatever the quantization (for a pre-quantized AWQ/GPTQ checkpoint this over-sizes).
ROOT_BASE_GIB = 100
ROOT_CHECKPOINT_FACTOR = 2.0

# vLLM's liveness route: 200 once the engine serves. An NLB health check is a GET without a body
# or custom headers, so it cannot send a completion (a POST with a JSON body and the API key).
HEALTH_PATH = "/health"


class PlacementError(TierkitError):
    """The account's network cannot hold the servers (found while the program runs)."""


def placement_error(problem: str) -> PlacementError:
    """A PlacementError (`problem` under the spec's key) that is also Pulumi's RunError, which
    Pulumi prints without a traceback (Pulumi loads only while the program runs)."""
    import pulumi

    from tierkit.spec import SPEC_KEY

    return type("PlacementError", (PlacementError, pulumi.RunError), {})(f"{SPEC_KEY}.{problem}")


SubnetId = Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]


class AwsConfig(StrictModel):
    """EC2 GPU instances (needs the Pulumi CLI; the rehearsal refuses cloud resources)."""

    kind: Literal["aws"]
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$", description="AWS region, e.g. us-east-1")
    instance_type: str | None = Field(None, pattern=r"^[a-z][a-z0-9-]{1,15}\.[a-z0-9]{2,16}$",
                                      description="default: from the GPU set (tierkit's map)")
    ami: str | None = Field(
        None, pattern=r"^ami-[0-9a-f]{8,17}$",
        description="default: the Deep Learning Base AMI current at the first up, then kept",
    )
    ssh_cidr: str = Field(description="CIDR allowed to reach SSH and the endpoint, e.g. 203.0.113.0/24")
    public_key_path: LocalPath = Field(description="SSH public key registered as the instance key pair")
    private_key_path: LocalPath = Field(description="matching private key, used by Ready and Ansible")
    vpc_id: str | None = Field(None, pattern=r"^vpc-[0-9a-f]{8,17}$", description="default: the region's default VPC")
    subnet_ids: list[SubnetId] | None = Field(
        None, min_length=1, max_length=8, description="subnets to place servers in (one zone each); default: the VPC's subnets"
    )
    availability_zones: list[Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}[a-z]$")]] | None = Field(
        None, min_length=1, max_length=8, description="zones to use; default: every zone that offers the instance type"
    )

    @field_validator("ssh_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value, strict=True)
        except ValueError:
            raise ValueError(f"{excerpt(value)} is not an IPv4 CIDR block; give the operator's network, e.g. 203.0.113.0/24") from None
        if network.prefixlen == 0:
            raise ValueError(f"{value} opens SSH and the endpoint to the whole internet; give the operator's network, e.g. 203.0.113.0/24")
        return value


def config_of(spec: TierSpec) -> AwsConfig:
    p = spec.provider
    assert isinstance(p, AwsConfig)
    return p


def instance_type(spec: TierSpec) -> str | None:
    return config_of(spec).instance_type or INSTANCE_TYPES.get((spec.gpu.model, spec.gpu.count))


def checkpoint_gib(spec: TierSpec) -> float:
    """The bytes vLLM downloads: the model's parameters at BF16."""
    return spec.model_info.params_b * 1e9 * catalog.BYTES_PER_PARAM["bf16"] / GIB


def root_volume_gib(spec: TierSpec) -> int:
    return int(math.ceil((ROOT_BASE_GIB + ROOT_CHECKPOINT_FACTOR * checkpoint_gib(spec)) / 10) * 10)


def default_vpc(region: str, ids: list[str]) -> str:
    if not ids:
        raise placement_error(f"provider.vpc_id: {region} has no default VPC; set provider.vpc_id and "
                             f"provider.subnet_ids to a VPC and public subnets of yours")
    return ids[0]


def zones_needed(spec: TierSpec) -> int:
    """Copies of the model spread over zones, one each (a zone's outage takes one copy); a model
    split over servers keeps them in one zone, its stages exchange activations every step (a zone
    boundary adds latency and per-GB charges to every hop)."""
    return 1 if spec.tier == "multi-server" else spec.server_count


def place(spec: TierSpec, itype: str, subnets: list[str], zones: list[str], offered: list[str]) -> list[str]:
    """A subnet per server: each copy of the model in a distinct zone that offers `itype` (and
    that the spec allows), a split model's servers all in the first; the spec's subnets in its
    order, else the VPC's by zone name."""
    p = config_of(spec)
    allowed = set(offered) & set(p.availability_zones or offered)
    pairs = list(zip(subnets, zones))
    if p.subnet_ids is None:
        pairs.sort(key=lambda sz: (sz[1], sz[0]))
    else:
        missing = [s for s in p.subnet_ids if s not in subnets]
        if missing:
            raise placement_error(f"provider.subnet_ids: {', '.join(missing)} not found in {p.vpc_id}; "
                                 f"list subnets of provider.vpc_id")
        pairs.sort(key=lambda sz: p.subnet_ids.index(sz[0]))
    chosen: dict[str, str] = {}
    for subnet, zone in pairs:
        if zone in allowed and zone not in chosen:
            chosen[zone] = subnet
    n = zones_needed(spec)
    if len(chosen) < n:
        where = ", ".join(f"{z} ({s})" for z, s in sorted(chosen.items())) or "none"
        raise placement_error(
            f"provider: {itype} is offered in {len(offered)} zone(s) of {p.region} "
            f"({', '.join(sorted(offered)) or 'none'}) and the usable subnets cover {where}; {spec.server_count} "
            f"server(s) need {n} zone(s): add subnets in other offering zones (provider.subnet_ids), or pick another "
            f"region or instance type"
        )
    picked = list(chosen.values())[:n]
    return [picked[i % n] for i in range(spec.server_count)]


class AwsProvider(RealServers):
    kind: ClassVar[str] = "aws"
    config: ClassVar[type[BaseModel]] = AwsConfig
    load_balancer: ClassVar[bool] = True
    api_key_required: ClassVar[bool] = True

    def allowed_sources(self, spec: TierSpec, hosts: list[Host]) -> list[str]:
        """The servers' VPC (the load balancer, its health checks, the peers; each host carries the
        VPC's CIDR) and the operator's ssh_cidr."""
        return [*{h.private_network for h in hosts if h.private_network}, str(config_of(spec).ssh_cidr)]

    def problems(self, spec: TierSpec) -> list[str]:
        p = config_of(spec)
        found = []
        if spec.failover is not None:
            found.append("failover: aws has no virtual IP (a VPC does not carry VRRP's floating address); remove "
                         "the failover section: the network load balancer health-checks both servers and fronts them")
        itype = instance_type(spec)
        if itype is None:
            known = ", ".join(f"{n}x {g}" for g, n in INSTANCE_TYPES)
            found.append(
                f"provider.instance_type: no EC2 instance type in tierkit's map carries "
                f"{spec.gpu.count}x {spec.gpu.model} (mapped: {known}); set provider.instance_type"
            )
        elif itype in INSTANCE_GPUS and INSTANCE_GPUS[itype] != (spec.gpu.model, spec.gpu.count):
            model, count = INSTANCE_GPUS[itype]
            found.append(
                f"gpu: {itype} carries {count}x {model}, the spec asks for {spec.gpu.count}x {spec.gpu.model} "
                f"(the driver check would fail); set gpu: {{model: {model}, count: {count}}} or another instance type"
            )
        zones, n = p.availability_zones, zones_needed(spec)
        if zones is not None and len(set(zones)) < n:
            found.append(
                f"provider.availability_zones: {spec.server_count} servers need "
                f"{n} distinct zones, got {zones}; list one zone per server"
            )
        if p.subnet_ids is not None:
            if p.vpc_id is None:
                found.append(f"provider.subnet_ids: set provider.vpc_id to the subnets' VPC too "
                             f"(the security groups and the target group live in it)")
            if len(set(p.subnet_ids)) < n:
                found.append(f"provider.subnet_ids: {spec.server_count} servers need {n} "
                             f"subnets in distinct zones, got {len(set(p.subnet_ids))}; list one subnet per server")
        for key in ("public_key_path", "private_key_path"):
            problem = key_file_problem(f"provider.{key}", getattr(p, key))
            if problem:
                found.append(problem)
        return found

    def provision(self, spec: TierSpec, ctx: StackContext, opts: pulumi.ResourceOptions) -> Provisioned:
        import pulumi
        import pulumi_aws as aws

        p = config_of(spec)
        itype = instance_type(spec)
        assert itype is not None  # problems() refused the spec otherwise
        port = spec.serving.port
        region = p.region
        cidr = str(p.ssh_cidr)
        invoke = pulumi.InvokeOutputOptions(parent=opts.parent)
        tags = {"tierkit-stack": ctx.stack}

        vpc_id: pulumi.Output = (
            pulumi.Output.from_input(p.vpc_id)
            if p.vpc_id
            else aws.ec2.get_vpcs_output(filters=[{"name": "is-default", "values": ["true"]}], region=region,
                                         opts=invoke).ids.apply(lambda ids: default_vpc(region, ids))
        )
        vpc = aws.ec2.get_vpc_output(id=vpc_id, region=region, opts=invoke)
        filters: list[Any] = [{"name": "vpc-id", "values": [vpc_id]}]
        if p.subnet_ids:
            filters.append({"name": "subnet-id", "values": list(p.subnet_ids)})
        elif not p.vpc_id:
            filters.append({"name": "default-for-az", "values": ["true"]})
        candidates = aws.ec2.get_subnets_output(filters=filters, region=region, opts=invoke).ids
        subnet_zones = candidates.apply(lambda ids: pulumi.Output.all(*[
            aws.ec2.get_subnet_output(id=i, region=region, opts=invoke).availability_zone for i in ids
        ]))
        offered = aws.ec2.get_instance_type_offerings_output(
            location_type="availability-zone", filters=[{"name": "instance-type", "values": [itype]}],
            region=region, opts=invoke,
        ).locations
        placed = pulumi.Output.all(candidates, subnet_zones, offered).apply(
            lambda a: place(spec, itype, a[0], a[1] or [], a[2] or [])
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

        key = aws.ec2.KeyPair(
            "key", public_key=Path(p.public_key_path).expanduser().read_text().strip(), region=region, tags=tags, opts=opts
        )
        servers_sg = aws.ec2.SecurityGroup(
            "servers", vpc_id=vpc_id, description=f"tierkit {ctx.stack}: GPU servers", region=region, tags=tags, opts=opts
        )
        lb_sg = aws.ec2.SecurityGroup(
            "lb", vpc_id=vpc_id, description=f"tierkit {ctx.stack}: load balancer", region=region, tags=tags, opts=opts
        )
        rule = dict(region=region, opts=opts)
        aws.vpc.SecurityGroupIngressRule("ssh", security_group_id=servers_sg.id, ip_protocol="tcp", from_port=22,
                                         to_port=22, cidr_ipv4=cidr, description="SSH from the operator", **rule)
        aws.vpc.SecurityGroupIngressRule("vllm-from-peer", security_group_id=servers_sg.id, ip_protocol="tcp",
                                         from_port=port, to_port=port, referenced_security_group_id=servers_sg.id,
                                         description="vLLM from the peer server", **rule)
        if spec.tier == "multi-server":  # one model over the servers: rendezvous, message queues, gloo/NCCL
            aws.vpc.SecurityGroupIngressRule("cluster-from-peers", security_group_id=servers_sg.id, ip_protocol="tcp",
                                             from_port=1024, to_port=65535, referenced_security_group_id=servers_sg.id,
                                             description="multi-node vLLM between the servers", **rule)
        aws.vpc.SecurityGroupIngressRule("vllm-from-lb", security_group_id=servers_sg.id, ip_protocol="tcp",
                                         from_port=port, to_port=port, referenced_security_group_id=lb_sg.id,
                                         description="vLLM and its health checks from the load balancer", **rule)
        aws.vpc.SecurityGroupEgressRule("servers-out", security_group_id=servers_sg.id, ip_protocol="-1",
                                        cidr_ipv4="0.0.0.0/0", description="packages and model downloads", **rule)
        aws.vpc.SecurityGroupIngressRule("lb-in", security_group_id=lb_sg.id, ip_protocol="tcp", from_port=port,
                                         to_port=port, cidr_ipv4=cidr, description="clients (the operator's network)",
                                         **rule)
        aws.vpc.SecurityGroupEgressRule("lb-to-servers", security_group_id=lb_sg.id, ip_protocol="tcp",
                                        from_port=port, to_port=port, referenced_security_group_id=servers_sg.id,
                                        description="load balancer to vLLM (traffic and health checks)", **rule)

        # A looked-up AMI is kept once an instance runs it (a newer DLAMI would replace the instance);
        # an AMI the spec names is followed, so changing it is the explicit way to move.
        instance_opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=None if p.ami else ["ami"]))
        # A split model's servers close together on the network (one zone, a cluster placement group).
        group = (aws.ec2.PlacementGroup("cluster", strategy="cluster", region=region, tags=tags, opts=opts).name
                 if zones_needed(spec) < spec.server_count else None)
        instances = [
            aws.ec2.Instance(
                f"server{i + 1}",
                ami=ami,
                instance_type=itype,
                subnet_id=placed.apply(lambda s, i=i: s[i]),
                vpc_security_group_ids=[servers_sg.id],
                placement_group=group,
                key_name=key.key_name,
                associate_public_ip_address=True,
                metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                    http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
                ),
                root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                    volume_size=root_volume_gib(spec), volume_type="gp3", delete_on_termination=True
                ),
                region=region,
                tags={**tags, "Name": f"tierkit-{ctx.stack}-server{i + 1}"},
                opts=instance_opts,
            )
            for i in range(spec.server_count)
        ]

        lb = aws.lb.LoadBalancer("lb", load_balancer_type="network", internal=False,
                                 subnets=placed.apply(lambda s: list(dict.fromkeys(s))),  # one per zone
                                 security_groups=[lb_sg.id], region=region, tags=tags, opts=opts)
        targets = aws.lb.TargetGroup(
            "vllm", port=port, protocol="TCP", vpc_id=vpc_id, target_type="instance", preserve_client_ip="false",
            health_check=aws.lb.TargetGroupHealthCheckArgs(protocol="HTTP", path=HEALTH_PATH, port="traffic-port",
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
        hosts = pulumi.Output.all(vpc.cidr_block, *[pulumi.Output.all(i.public_ip, i.private_ip) for i in instances]).apply(
            lambda a: [
                Host(name=f"server{i + 1}", address=public, private_address=private, private_network=a[0],
                     user=AMI_USER, key_path=key_path).model_dump()
                for i, (public, private) in enumerate(a[1:])
            ]
        )
        endpoint = pulumi.Output.concat("http://", lb.dns_name, f":{port}")
        amis = pulumi.Output.all(*[i.ami for i in instances]).apply(lambda ids: sorted(set(ids)))
        notes = amis.apply(lambda ids: [
            f"aws: the servers run {', '.join(ids)}"
            + (" (provider.ami)" if p.ami else
               " (the DLAMI current at the first up, kept by ignore_changes; set provider.ami to move, which replaces them)")
        ])
        return Provisioned(hosts=hosts, endpoint=endpoint, resources=[*instances], notes=notes)

    def preview_lookup(self, spec: TierSpec, token: str, args: dict[str, Any]) -> dict[str, Any]:
        """Placeholder answers to this provider's lookups for `tierkit preview` (nothing asks AWS):
        a default VPC, one subnet per server, each in a zone that offers the type, the current DLAMI.
        Every invented id is in parentheses."""
        p = config_of(spec)
        zones = p.availability_zones or [f"(zone {n + 1})" for n in range(spec.server_count)]
        subnets = list(p.subnet_ids or [f"(subnet {n + 1})" for n in range(spec.server_count)])
        answers: dict[str, dict[str, Any]] = {
            "aws:ec2/getVpcs:getVpcs": {"id": p.region, "ids": ["(default VPC)"]},
            "aws:ec2/getVpc:getVpc": {"id": args.get("id"), "cidrBlock": "(the VPC's CIDR)"},
            "aws:ec2/getSubnets:getSubnets": {"id": p.region, "ids": subnets},
            "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings": {"id": p.region, "locations": zones},
            "aws:ec2/getAmi:getAmi": {"id": p.ami or "(the current DLAMI)"},
        }
        if token == "aws:ec2/getSubnet:getSubnet":
            return {"id": args["id"], "availabilityZone": zones[subnets.index(args["id"]) % len(zones)]}
        if token not in answers:
            raise TierkitError(f"preview: no placeholder for the lookup {token}; tierkit's aws provider must answer it")
        return answers[token]

    def hosts(self, spec: TierSpec) -> list[Host]:
        raise TierkitError("--hosts: aws hosts come from the stack's outputs; pass --hosts FILE, or pipe "
                           "`pulumi stack output hosts --json --stack NAME` into --hosts -")
