"""Hosts + tier spec -> Ansible inventory and group vars: the only bridge between tierkit and the roles.

`render(spec, hosts)` gives an `Inventory`: the `gpu_servers` group and the `failover` group (the
pair behind a failover tier's virtual IP; empty on the other tiers and on aws, where the load
balancer fronts the pair, so site.yml's failover play matches no host rather than an unknown
pattern) with each host's SSH settings, host keys pinned through its
known_hosts file, and the group vars of every role, prefixed with the role's name.
`write(inventory, dir)` lays it out as `hosts.yml` + `group_vars/gpu_servers.yml`, which
`ansible-playbook -i DIR/hosts.yml` reads.
Secrets (the vLLM API key, a Hugging Face token) never go into these files: `secret_vars()`
returns them for the runner to pass as extra vars.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from tierkit import catalog, planner, providers
from tierkit.atomicfile import write_atomic
from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.spec import DRAIN_AGENT_PORT, HAPROXY_STATS_PORT, TierSpec

GROUP = "gpu_servers"
FAILOVER_GROUP = "failover"
# The failover role's HAProxy backend (roles/failover/templates/haproxy.cfg.j2); its servers are
# named after the nodes' inventory names.
HAPROXY_BACKEND = "tierkit_vllm"
MULTI_SERVER_GROUP = "multi_server"

# nccl gate. The catalog's busbw expectations are large-message figures (docs/nvidia.md, "NCCL
# bus bandwidth"). nccl-tests' busbw already takes the rank count out (algbw x 2(n-1)/n for
# all_reduce, nccl-tests doc/PERFORMANCE.md), so one figure per interconnect holds for any GPU
# count: it is compared as it is (a single GPU has no bus: no floor). The floor is 80% of it:
# tierkit's allowance for run-to-run spread and the low end of the published ranges.
NCCL_FLOOR_FRACTION = 0.8
# Bridges join GPUs in pairs: a ring over more than two of them crosses PCIe, so it is held to
# the PCIe figure (the low end of the PCIe-only range, docs/nvidia.md).
PCIE_BUSBW_GBS = 28.0

# vLLM flags for each spec quantization: fp16/bf16 are dtypes; int8 (W8A8) checkpoints carry
# their own quantization config, which vLLM reads without a flag.
DTYPE = {"fp16": "float16", "bf16": "bfloat16"}
QUANTIZATION_FLAG = {"fp8": "fp8", "awq": "awq", "gptq": "gptq"}

# The network gate's default floor per link between the servers of a split (docs/multi-server.md):
# planner.CROSS_SERVER_TP_MIN_GBPS (the published minimum for tensor parallelism across servers),
# applied when each stage runs tensor parallel; and tierkit's lower floor for a pipeline-only split
# (TP=1 per server), where only one stage's activations cross the link per step.
PIPELINE_SPLIT_FLOOR_GBPS = 10.0

# Environment variables the roles' secrets are read from (the Pulumi program passes its secrets the
# same way): the API key vLLM will require on /v1/* (not the key a client sends: that is the
# smoke client's CLIENT_API_KEY_ENV), and a Hugging Face token for gated models.
VLLM_API_KEY_ENV = "TIERKIT_API_KEY"
HF_TOKEN_ENV = "HF_TOKEN"
SECRET_MAX = 4096
# A bearer token's characters (RFC 6750 b64token): it goes into an env file, HTTP headers and
# health checks unquoted-safe. Empty: unset.
SECRET_TEXT = re.compile(rf"[A-Za-z0-9._~+/-]{{0,{SECRET_MAX}}}=*")


class Inventory(BaseModel):
    """A rendered inventory: host entries per group and the gpu_servers group vars."""

    model_config = ConfigDict(frozen=True)

    hosts: dict[str, dict[str, Any]]
    groups: dict[str, list[str]]
    group_vars: dict[str, Any]

    def inventory_doc(self) -> dict[str, Any]:
        children = {
            group: {"hosts": {name: self.hosts[name] for name in names}}
            for group, names in self.groups.items()
        }
        return {"all": {"children": children}}


def nccl_busbw_floor_gbs(gpu: catalog.Gpu, gpus: int) -> float:
    """The bus bandwidth all_reduce_perf must reach on `gpus` GPUs of this model (0: no gate)."""
    if gpus < 2:
        return 0.0
    expected = PCIE_BUSBW_GBS if gpu.nvlink == "bridge" and gpus > 2 else gpu.nccl_busbw_gbs
    return round(NCCL_FLOOR_FRACTION * expected, 1)


def host_vars(host: Host) -> dict[str, Any]:
    """SSH settings of one host; its key is verified against its known_hosts file, never skipped."""
    known_hosts = host.known_hosts or str(Path("~/.ssh/known_hosts").expanduser())
    args = ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes"]
    return {
        "ansible_host": host.address,
        "ansible_port": host.port,
        "ansible_user": host.user,
        "ansible_ssh_private_key_file": host.key_path,
        "ansible_ssh_common_args": shlex.join(args),
    }


def model_source(spec: TierSpec) -> str:
    """What vLLM loads: a directory on the servers, or a Hugging Face id."""
    m = spec.model
    if m.path:
        return m.path
    on_servers = providers.get(spec).model_path(spec)
    if on_servers:
        return on_servers
    hf_id = m.hf_id or spec.model_info.hf_id
    if hf_id:
        return hf_id
    raise TierkitError(
        f"model: {m.key or 'the model'} has no weights source on {spec.provider.kind} servers; "
        f"set model.path (a directory on the servers) or model.hf_id"
    )


def preflight_vars(spec: TierSpec, hosts: list[Host]) -> dict[str, Any]:
    """What preflight needs from the plan: the size of the weights download (none for a model
    directory already on the servers), which the model cache's disk must hold 1.2 times."""
    local = model_source(spec).startswith("/")
    download = 0 if local else int(planner.weights_bytes(spec.model_info, spec.model.quantization))
    return {"preflight_download_bytes": download}


def driver_vars(spec: TierSpec, hosts: list[Host]) -> dict[str, Any]:
    gpu = spec.gpu_info
    out: dict[str, Any] = {
        "nvidia_driver_gpu_count": spec.gpu.count,
        "nvidia_driver_fabricmanager": gpu.fabric_manager,
    }
    return out


def nccl_vars(spec: TierSpec, hosts: list[Host]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "nccl_gpus": spec.gpu.count,
        "nccl_busbw_floor_gbs": nccl_busbw_floor_gbs(spec.gpu_info, spec.gpu.count),
        "nccl_env": {"NCCL_P2P_DISABLE": "1"} if spec.serving.nccl_p2p_disable else {},
    }
    return out


def topology_vars(spec: TierSpec, hosts: list[Host]) -> dict[str, Any]:
    gpu = spec.gpu_info
    return {
        "gpu_topology_expected_count": spec.gpu.count,
        "gpu_topology_expected_names": list(gpu.smi_names),
        "gpu_topology_tensor_parallel": spec.tensor_parallel,
        "gpu_topology_require_nvlink": spec.gpu.interconnect == "nvlink",
        "gpu_topology_min_nvlinks": gpu.nvlink_links,
        "gpu_topology_fabric_manager": gpu.fabric_manager,
    }


def vllm_port(spec: TierSpec) -> int:
    """vLLM's port (`TierSpec.vllm_port`: behind HAProxy on the failover tier)."""
    return spec.vllm_port


def vllm_vars(spec: TierSpec, hosts: list[Host]) -> dict[str, Any]:
    sv = spec.serving
    quant = spec.model.quantization
    sources = [h.inside_address for h in hosts] if len(hosts) > 1 else []
    if spec.failover is not None:
        # Clients reach vLLM through HAProxy (on the VIP and both nodes) and the peers; the
        # provider's own clients too (the lab's drills, the operator) unless the spec says who.
        sources.append(str(spec.failover.virtual_ip))
    if spec.failover is None or spec.serving.allowed_sources is None:
        sources += client_sources(spec, hosts)
    out: dict[str, Any] = {
        "vllm_model": model_source(spec),
        "vllm_served_model_name": spec.served_model_name,
        "vllm_port": vllm_port(spec),
        "vllm_tensor_parallel_size": spec.tensor_parallel,
        "vllm_pipeline_parallel_size": spec.pipeline_parallel,
        "vllm_data_parallel_size": spec.data_parallel,
        "vllm_quantization": QUANTIZATION_FLAG.get(quant, ""),
        "vllm_dtype": DTYPE.get(quant, ""),
        "vllm_max_model_len": spec.context,
        "vllm_gpu_memory_utilization": sv.gpu_memory_utilization,
        "vllm_max_num_seqs": sv.max_num_seqs,
        "vllm_extra_args": list(sv.extra_args),
        "vllm_nccl_p2p_disable": sv.nccl_p2p_disable,
        "vllm_nnodes": spec.server_count if spec.tier == "multi-server" else 1,
        # A hung engine: restarted by the watchdog; on the failover tier HAProxy's checks take
        # the node out of the pool instead.
        "vllm_watchdog": spec.tier != "failover",
    }
    if spec.tier == "failover":
        # A changed setting restarts the pair one node at a time, each drained from both HAProxies
        # first (roles/failover) and back in both pools before the next one stops.
        out |= {"vllm_rolling_restart": True, "vllm_balancers": [
            {"host": h.name, "stats_url": f"http://127.0.0.1:{HAPROXY_STATS_PORT}/stats;csv", "backend": HAPROXY_BACKEND}
            for h in hosts]}
    if spec.tier == "multi-server":
        net = spec.network_gate
        out |= {"vllm_head": hosts[0].name, "vllm_master_port": net.master_port, "vllm_port_base": net.port_range_start}
    out["vllm_allowed_sources"] = sorted(set(sources))
    return out


def client_sources(spec: TierSpec, hosts: list[Host]) -> list[str]:
    """Where clients of the serving port come from: `serving.allowed_sources`, else the provider's
    default (the lab's switch, the operator's machine, the VPC and ssh_cidr)."""
    if spec.serving.allowed_sources is not None:
        return sorted({str(net) for net in spec.serving.allowed_sources})
    return sorted(set(providers.get(spec).allowed_sources(spec, hosts)))


def failover_vars(spec: TierSpec, hosts: list[Host]) -> dict[str, Any]:
    """The pair, its VIP, VRRP settings and ports (the failover tier only; other tiers: none)."""
    fo = spec.failover
    if fo is None:
        return {}
    return {
        "failover_nodes": [{"name": h.name, "address": h.inside_address} for h in hosts],
        "failover_virtual_ip": str(fo.virtual_ip),
        "failover_virtual_prefix": VIP_PREFIX,
        "failover_router_id": fo.router_id,
        "failover_advert_int": fo.advert_int,
        "failover_port": spec.serving.port,
        "failover_backend_port": vllm_port(spec),
        "failover_stats_port": HAPROXY_STATS_PORT,
        "failover_agent_port": DRAIN_AGENT_PORT,
        "failover_allowed_sources": client_sources(spec, hosts),
        "failover_check_model": spec.served_model_name,
    }


def network_gate_floor_gbps(spec: TierSpec) -> float:
    """The spec's floor per link, or the default for its split (docs/multi-server.md)."""
    if spec.network_gate.min_gbps is not None:
        return spec.network_gate.min_gbps
    return planner.CROSS_SERVER_TP_MIN_GBPS if spec.tensor_parallel > 1 else PIPELINE_SPLIT_FLOOR_GBPS


def network_gate_vars(spec: TierSpec, hosts: list[Host]) -> dict[str, Any]:
    """The pairs the network gate measures and its floor (the multi-server tier only)."""
    if spec.tier != "multi-server":
        return {}
    return {
        "network_gate_nodes": [{"name": h.name, "address": h.inside_address} for h in hosts],
        "network_gate_min_gbps": network_gate_floor_gbps(spec),
        "network_gate_seconds": spec.network_gate.iperf_seconds,
    }


def node_vars(spec: TierSpec, hosts: list[Host]) -> dict[str, dict[str, Any]]:
    """Variables that differ per host: the node rank in a multi-server group, then the provider's."""
    out: dict[str, dict[str, Any]] = {h.name: {} for h in hosts}
    if spec.tier == "multi-server":
        for rank, h in enumerate(hosts):
            out[h.name]["vllm_node_rank"] = rank
    for name, extra in providers.get(spec).host_vars(spec, hosts).items():
        out[name] |= extra
    return out


# The VIP's prefix length: it shares the hosts' /24 (a provider that knows its subnet says so).
VIP_PREFIX = 24

# One builder per role, in site.yml's order.
ROLE_VARS: tuple[Callable[[TierSpec, list[Host]], dict[str, Any]], ...] = (
    preflight_vars, driver_vars, nccl_vars, topology_vars, network_gate_vars, vllm_vars, failover_vars,
)


def render(spec: TierSpec, hosts: list[Host]) -> Inventory:
    """The inventory for these hosts serving this spec."""
    if len(hosts) != spec.server_count:
        raise TierkitError(
            f"--hosts: {spec.tier} needs {spec.server_count} host(s), got {len(hosts)}; "
            f"pass the hosts of this stack"
        )
    group_vars: dict[str, Any] = {}
    for build in ROLE_VARS:
        group_vars |= build(spec, hosts)
    group_vars |= providers.get(spec).group_vars(spec, hosts)  # what differs on its servers
    names = [h.name for h in hosts]
    # The failover play (keepalived + HAProxy) runs where there is a VIP: not on aws, whose load
    # balancer fronts the pair.
    groups = {GROUP: names, FAILOVER_GROUP: names if spec.failover is not None else [],
              MULTI_SERVER_GROUP: names if spec.tier == "multi-server" else []}
    per_host = node_vars(spec, hosts)
    return Inventory(hosts={h.name: host_vars(h) | per_host[h.name] for h in hosts}, groups=groups,
                     group_vars=group_vars)


def write(inventory: Inventory, directory: str | Path) -> Path:
    """Write `hosts.yml` and `group_vars/gpu_servers.yml` under `directory`, each whole or not at
    all (a configure killed meanwhile leaves the old file or the new one); returns hosts.yml."""
    root = Path(directory)
    header = "# Rendered by `tierkit inventory` from the tier spec; regenerate rather than edit.\n"
    hosts_file = root / "hosts.yml"
    try:
        (root / "group_vars").mkdir(parents=True, exist_ok=True)
        write_atomic(hosts_file, header + yaml.safe_dump(inventory.inventory_doc(), sort_keys=False))
        write_atomic(root / "group_vars" / f"{GROUP}.yml", header + yaml.safe_dump(inventory.group_vars, sort_keys=False))
    except OSError as exc:
        raise TierkitError(f"{root}: cannot write the inventory there ({exc.strerror}); pick a writable directory") from None
    return hosts_file


def secret_vars(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The secrets the roles take as extra vars, read from the environment (empty when unset).
    Each must be printable text: it is written into an env file on the servers."""
    env = os.environ if environ is None else environ
    found = {"vllm_api_key": env.get(VLLM_API_KEY_ENV, ""), "vllm_hf_token": env.get(HF_TOKEN_ENV, "")}
    for value, name in zip(found.values(), (VLLM_API_KEY_ENV, HF_TOKEN_ENV)):
        if not SECRET_TEXT.fullmatch(value):
            raise TierkitError(f"${name}: the secret holds characters a bearer token cannot (letters, digits and "
                               f"-._~+/ then '=' only) or over {SECRET_MAX} of them; set it to the token itself")
    return found
