"""The tier spec: what a platform team wants served, as pydantic models, validated to one-line errors.

A stack file (`stacks/Pulumi.<stack>.yaml`) holds the spec under the config key `tierkit:tier`.
`load_stack` / `load_spec_file` read it; `parse_spec` validates a plain dict. Every problem comes
out as `<field path>: <what is wrong>; <how to fix>` inside one `TierkitError`, and nothing is
touched before the whole spec is valid.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, ValidationError, field_validator

from tierkit import catalog, planner, providers, safe_yaml
from tierkit.errors import TierkitError
from tierkit.safe_yaml import excerpt
from tierkit.smoke import defaults as smoke_defaults
from tierkit.textrules import ExtraArg, HfId, IPv4NetText, IPv4Text, Port, ServedName, ServerPath, StrictModel

SPEC_KEY = "tierkit:tier"
TierKind = Literal["single-gpu", "multi-gpu", "failover", "multi-server"]
Interconnect = Literal["nvlink", "pcie", "any"]

# GPUs per server, and servers, each tier allows (inclusive ranges). multi-server splits one model
# across its servers: a pipeline stage per server, tensor parallelism inside each.
TIER_GPUS: dict[str, tuple[int, int]] = {"single-gpu": (1, 1), "multi-gpu": (2, 8), "failover": (1, 8), "multi-server": (1, 8)}
TIER_SERVERS: dict[str, tuple[int, int]] = {"single-gpu": (1, 1), "multi-gpu": (1, 1), "failover": (2, 2), "multi-server": (2, 8)}


# Ports tierkit's roles use on every server besides the serving ports: SSH, and on the failover
# tier HAProxy's statistics page and the drain agent HAProxy polls (roles/failover,
# `failover_stats_port`, `failover_agent_port`).
SSH_PORT = 22
HAPROXY_STATS_PORT = 8404
DRAIN_AGENT_PORT = 8405
# vLLM runs as an unprivileged user: it can bind only ports from here up.
FIRST_UNPRIVILEGED_PORT = 1024
# Config keys Pulumi keeps as secrets, with the command that sets each.
SECRET_CONFIG = {"tierkit:apiKey": "pulumi config set --secret tierkit:apiKey", "tierkit:hfToken": "pulumi config set --secret tierkit:hfToken"}


# ---------------------------------------------------------------------------------------------
# What runs on the servers.


class GpuSpec(StrictModel):
    model: str = Field(max_length=64, description="catalog GPU key, e.g. rtx-pro-6000, h100-sxm")
    count: int = Field(ge=1, le=8, description="GPUs per server")
    interconnect: Interconnect = Field("any", description="required link between the GPUs")


class ModelSpec(StrictModel):
    """A catalog model (`key`), or one given by its numbers; weights from hf_id or a local path."""

    key: str | None = Field(None, max_length=64, description="catalog model key, e.g. llama-3.3-70b")
    hf_id: HfId | None = Field(None, description="Hugging Face id to download (default: the catalog's)")
    path: ServerPath | None = Field(None, description="model directory already on the servers")
    params_b: float | None = Field(None, gt=0, le=100_000, description="billions of parameters")
    layers: int | None = Field(None, gt=0, le=4096)
    hidden_size: int | None = Field(None, gt=0, le=1 << 20)
    attention_heads: int | None = Field(None, gt=0, le=4096)
    kv_heads: int | None = Field(None, gt=0, le=4096)
    head_dim: int | None = Field(None, gt=0, le=65536)
    quantization: catalog.Quantization = "bf16"
    max_context: int | None = Field(None, gt=0, le=1 << 24, description="tokens; default: planner.default_context")


class ServingSpec(StrictModel):
    tensor_parallel: int | None = Field(None, ge=1, le=8, description="default: GPUs per server / (PP x DP)")
    pipeline_parallel: int | None = Field(None, ge=1, le=8, description="default: 1, or the servers on multi-server")
    data_parallel: int = Field(1, ge=1, le=8, description="engines per server, each on TP x PP GPUs (vLLM --data-parallel-size)")
    port: Port = 8000
    max_num_seqs: int = Field(64, ge=1, le=65536)
    gpu_memory_utilization: float = Field(planner.DEFAULT_UTILIZATION, gt=0, le=1)
    served_model_name: ServedName | None = Field(None, description="default: the model key or directory name")
    extra_args: list[ExtraArg] = Field(default_factory=list, max_length=256,
                                       description="extra vLLM flags, passed through (not those tierkit sets)")
    allow_pcie_tensor_parallel: bool = Field(False, description="allow TP > 1 without NVLink")
    nccl_p2p_disable: bool = Field(False, description="NCCL_P2P_DISABLE=1 (PCIe IOMMU/ACS hangs)")
    allowed_sources: list[IPv4NetText] | None = Field(
        None, max_length=256, description="CIDRs that may reach the serving port (the VIP's on the failover tier); default: "
                          "the provider's (the operator's address on baremetal, the default VPC and ssh_cidr on aws)")


class SmokeSpec(StrictModel):
    concurrency: int = Field(smoke_defaults.CONCURRENCY, ge=1, le=4096)
    requests: int = Field(smoke_defaults.REQUESTS, ge=1, le=1_000_000)
    input_len: int = Field(smoke_defaults.INPUT_LEN, ge=1, le=1 << 24)
    output_len: int = Field(smoke_defaults.OUTPUT_LEN, ge=1, le=1 << 24)
    warmup: int = Field(smoke_defaults.WARMUP, ge=0, le=10_000)
    min_output_tok_s: float | Literal["derive"] = Field("derive", description="a number, or 'derive' from the plan")
    max_p99_ttft_ms: float | None = Field(None, gt=0, le=86_400_000)
    max_p99_tpot_ms: float | None = Field(None, gt=0, le=86_400_000)
    max_failed: int = Field(smoke_defaults.MAX_FAILED, ge=0, le=1_000_000)

    @field_validator("min_output_tok_s", mode="before")
    @classmethod
    def _number_or_derive(cls, value: Any) -> Any:
        if value == "derive" or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                 and math.isfinite(value) and 0 < value <= 1e9):
            return value
        raise ValueError(f"{excerpt(value)} is not a positive number or 'derive'; give tokens/s, or derive (from the plan)")


# VRRPv3 carries the advertisement interval in centiseconds in a 12-bit field (RFC 5798, 5.2.7):
# 0.01 s to 40.95 s in steps of 0.01 s. A backup takes over after 3 x advert_int + skew
# (docs/failover.md); 0.25 s gives about 0.9 s.
ADVERT_INT_DEFAULT_S = 0.25
ADVERT_INT_MIN_S = 0.01
ADVERT_INT_MAX_S = 40.95


class FailoverSpec(StrictModel):
    virtual_ip: IPv4Text
    router_id: int = Field(51, ge=1, le=255, description="VRRP virtual router id")
    advert_int: float = Field(ADVERT_INT_DEFAULT_S, ge=ADVERT_INT_MIN_S, le=ADVERT_INT_MAX_S,
                              description="VRRPv3 advert interval, seconds in steps of 0.01")

    @field_validator("advert_int")
    @classmethod
    def _whole_centiseconds(cls, value: float) -> float:
        centis = round(value * 100)
        if abs(value * 100 - centis) > 1e-6:
            raise ValueError(f"{excerpt(value)} is not a whole number of centiseconds (VRRPv3 carries 0.01 s steps); "
                             f"use e.g. {centis / 100:g}")
        return centis / 100


PORT_RANGE_SIZE = 100  # ports vLLM's message queues may bind from network.port_range_start


class NetworkSpec(StrictModel):
    """The network gate of a multi-server tier: every pair of servers measured before serving."""

    min_gbps: float | None = Field(None, gt=0, le=100_000, description="floor per link; default from the split (docs/multi-server.md)")
    iperf_seconds: int = Field(3, ge=1, le=60, description="iperf3 run per link, seconds")
    master_port: int = Field(29501, ge=1024, le=65535, description="torch.distributed rendezvous port on the head")
    port_range_start: int = Field(29600, ge=1024, le=65535 - 99, description="first of 100 ports vLLM's message queues bind (VLLM_PORT)")


class TierSpec(StrictModel):
    """The whole tier spec (the value of `tierkit:tier`)."""

    tier: TierKind
    provider: providers.ProviderConfig = Field(default_factory=providers.default_config)
    gpu: GpuSpec
    model: ModelSpec
    serving: ServingSpec = Field(default_factory=ServingSpec)
    smoke: SmokeSpec = Field(default_factory=SmokeSpec)
    failover: FailoverSpec | None = None
    network: NetworkSpec | None = Field(None, description="multi-server only; default: NetworkSpec()")
    servers: int | None = Field(None, ge=1, le=64, description="default: 1, or 2 for failover and multi-server")
    users: int | None = Field(None, ge=1, le=10_000_000, description="concurrent users to size for")

    # Derived views (the rules below guarantee they are well defined on a valid spec).
    @property
    def server_count(self) -> int:
        return self.servers if self.servers is not None else TIER_SERVERS[self.tier][0]

    @property
    def replicas(self) -> int:
        """Copies of the model served: one per server on failover, one in all on the other tiers."""
        return self.server_count if self.tier == "failover" else 1

    @property
    def network_gate(self) -> NetworkSpec:
        return self.network or NetworkSpec()

    @property
    def gpu_info(self) -> catalog.Gpu:
        return catalog.GPUS[self.gpu.model]

    @property
    def model_info(self) -> catalog.Model:
        return resolve_model(self.model)

    @property
    def replica_gpus(self) -> int:
        """GPUs one copy of the model runs on: all servers' on multi-server, one server's otherwise."""
        return self.gpu.count * (self.server_count if self.tier == "multi-server" else 1)

    @property
    def tensor_parallel(self) -> int:
        sv = self.serving
        if sv.tensor_parallel is not None:
            return sv.tensor_parallel
        return max(1, self.replica_gpus // (self.pipeline_parallel * self.data_parallel))

    @property
    def data_parallel(self) -> int:
        """Engines per server (a replica's GPUs are data_parallel engines of TP x PP GPUs each)."""
        return self.serving.data_parallel

    @property
    def pipeline_parallel(self) -> int:
        if self.serving.pipeline_parallel is not None:
            return self.serving.pipeline_parallel
        return self.server_count if self.tier == "multi-server" else 1

    @property
    def context(self) -> int:
        m = self.model_info
        return self.model.max_context or planner.default_context(m)

    @property
    def vllm_port(self) -> int:
        """vLLM's port: the serving port, except behind a failover VIP, where HAProxy serves that port
        and each vLLM sits behind it on the next one (the one before, for 65535). Without a VIP (aws:
        the load balancer fronts the servers) vLLM serves the serving port itself."""
        port = self.serving.port
        if self.failover is None:
            return port
        return port + 1 if port < 65535 else port - 1

    @property
    def served_model_name(self) -> str:
        if self.serving.served_model_name:
            return self.serving.served_model_name
        if self.model.key:
            return self.model.key
        return Path(self.model.path or self.model.hf_id or "model").name


_CUSTOM_FIELDS = ("params_b", "layers", "hidden_size", "attention_heads", "kv_heads", "head_dim")


def resolve_model(m: ModelSpec) -> catalog.Model:
    """The catalog entry for `m.key`, with any numbers given overriding it; or a custom model."""
    given = {f: getattr(m, f) for f in _CUSTOM_FIELDS if getattr(m, f) is not None}
    if m.key:
        base = catalog.lookup_model(m.key, "model.key")
        return base.model_copy(update={**given, "hf_id": m.hf_id or base.hf_id})
    heads = given.get("attention_heads")
    hidden = given.get("hidden_size")
    head_dim = given.get("head_dim") or (hidden // heads if hidden and heads else None)
    return catalog.Model(
        key=Path(m.path or m.hf_id or "custom").name,
        hf_id=m.hf_id,
        params_b=given["params_b"],
        layers=given["layers"],
        hidden_size=hidden or (head_dim or 0) * (heads or 0),
        attention_heads=heads,
        kv_heads=given.get("kv_heads", heads),
        head_dim=head_dim,
        default_context=m.max_context or planner.DEFAULT_CONTEXT,
    )


# ---------------------------------------------------------------------------------------------
# Turning pydantic's errors into one line each: `<path>: <what>; <fix>`.


def _field_text(text: str) -> str:
    """A field path or key as users wrote it, escaped and cut short when it is odd or long."""
    return text if len(text) <= 80 and text.isprintable() else excerpt(text, 80)


def _loc(prefix: str, loc: tuple[Any, ...]) -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item in providers.PROVIDERS:  # discriminated-union tags add no information
            continue
        else:
            parts.append(_field_text(str(item)))
    return ".".join(parts)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def _model_for(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the field at `loc` (to suggest a close key)."""
    candidates: list[type[BaseModel]] = [TierSpec]
    for item in loc[:-1]:
        if isinstance(item, int):
            continue
        if len(candidates) > 1:  # a discriminated union: pydantic puts the tag in the path
            candidates = [m for m in candidates if "kind" in m.model_fields and item in get_args(m.model_fields["kind"].annotation)]
            continue
        field = candidates[0].model_fields.get(item) if candidates else None
        candidates = _models_in(field.annotation) if field else []
    return candidates[0] if len(candidates) == 1 else None


PATTERN_HINTS = {
    "name": "use letters, digits, '_' and '-' (a lab name: up to 12 lower-case letters, digits and '-')",
    "region": "use an AWS region, e.g. us-east-1",
    "instance_type": "use an EC2 instance type, e.g. g6e.xlarge",
    "ami": "use an AMI id, e.g. ami-0123456789abcdef0",
    "availability_zones": "use zones of the region, e.g. us-east-1a",
    "subnet_ids": "use subnet ids, e.g. subnet-0123456789abcdef0",
    "vpc_id": "use a VPC id, e.g. vpc-0123456789abcdef0",
    "topology": "give nvlink, pcie, pairs or a file path without control characters",
    "key_path": "give a file path without control characters",
    "public_key_path": "give a file path without control characters",
    "private_key_path": "give a file path without control characters",
}


def _describe(err: dict[str, Any], prefix: str) -> str:
    loc = tuple(err["loc"])
    path = _loc(prefix, loc)
    kind = err["type"]
    given = err.get("input")
    if kind == "extra_forbidden":
        owner = _model_for(loc)
        known = dict.fromkeys(owner.model_fields) if owner else {}
        close = catalog.close_match(str(loc[-1]), known) if known else None
        fix = f"did you mean {close!r}?" if close else "remove it (see the README for the spec's keys)"
        return f"{path}: unknown key; {fix}"
    if kind == "missing":
        return f"{path}: required; add it"
    if kind == "invalid_key":
        return f"{path}: a key that is not text; spec keys are names such as tier, gpu, model"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{path}: {excerpt(given)} is not allowed; use one of {expected}"
    if kind == "union_tag_invalid":
        return f"{path}: unknown kind {excerpt(str(err.get('ctx', {}).get('tag')))}; use one of {', '.join(providers.PROVIDERS)}"
    if kind == "union_tag_not_found":
        return f"{path}: kind is missing; add kind: {' or '.join(providers.PROVIDERS)}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"):
        return f"{path}: {err['msg'].lower()}, got {excerpt(given)}; change the value"
    if kind == "value_error":
        return f"{path}: {str(err['msg']).removeprefix('Value error, ')}"
    if kind == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get(str(next((i for i in reversed(loc) if isinstance(i, str)), "")), "see the README's spec table")
        return f"{path}: {excerpt(given)} is not in the form this field takes; {hint}"
    if kind in ("string_too_long", "too_long", "string_too_short", "too_short"):
        return f"{path}: {err['msg'].lower()}; shorten or lengthen it"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{path}: {err['msg'].lower()}, got {excerpt(given)}; fix the value's type (numbers unquoted, no true/false for a count)"
    return f"{path}: {_plain_msg(err['msg'])}; fix the value"


def _plain_msg(msg: str) -> str:
    """pydantic's message, cut short: some quote the whole input."""
    return msg if len(msg) <= 120 else msg[:120] + "..."


# ---------------------------------------------------------------------------------------------
# Cross-field rules. Each returns problems; all are reported together.


def _check_catalog(spec: TierSpec, prefix: str) -> list[str]:
    problems = []
    if spec.gpu.model not in catalog.GPUS:
        problems.append(catalog.unknown_key("GPU", f"{prefix}.gpu.model", spec.gpu.model, catalog.GPUS))
    m = spec.model
    if m.key is not None and m.key not in catalog.MODELS:
        problems.append(catalog.unknown_key("model", f"{prefix}.model.key", m.key, catalog.MODELS))
    if m.key is None:
        missing = [f for f in ("params_b", "layers", "attention_heads") if getattr(m, f) is None]
        if m.head_dim is None and m.hidden_size is None:
            missing.append("head_dim")
        if missing:
            problems.append(
                f"{prefix}.model: no catalog key and no {', '.join(missing)}; "
                f"set model.key (one of {', '.join(catalog.MODELS)}) or give the model's numbers"
            )
        if m.hf_id is None and m.path is None:
            problems.append(f"{prefix}.model: no weights source; set model.hf_id or model.path")
    elif (m.key in catalog.MODELS and catalog.MODELS[m.key].hf_id is None and m.hf_id is None and m.path is None
          and providers.get(spec).model_path(spec) is None):
        problems.append(f"{prefix}.model.key: {m.key} has no weights outside the lab; choose a catalog model "
                        f"with a Hugging Face id, or set model.hf_id or model.path")
    return problems


def _check_shape(spec: TierSpec, prefix: str) -> list[str]:
    problems = []
    lo, hi = TIER_GPUS[spec.tier]
    n = spec.gpu.count
    if not lo <= n <= hi:
        want = "exactly 1 GPU" if lo == hi else f"{lo}-{hi} GPUs"
        fix = "use tier multi-gpu" if spec.tier == "single-gpu" else "use tier single-gpu" if n == 1 else "set gpu.count within range"
        problems.append(f"{prefix}.gpu.count: {spec.tier} means {want} per server, got {n}; {fix}")
    s_lo, s_hi = TIER_SERVERS[spec.tier]
    if not s_lo <= spec.server_count <= s_hi:
        if s_lo == s_hi:
            problems.append(f"{prefix}.servers: {spec.tier} means exactly {s_lo} server(s), got {spec.server_count}; set servers: {s_lo}")
        else:
            problems.append(f"{prefix}.servers: {spec.tier} means {s_lo}-{s_hi} servers, got {spec.server_count}; set servers within range")
    tp, pp, dp = spec.tensor_parallel, spec.pipeline_parallel, spec.data_parallel
    if spec.tier == "multi-server":
        if dp != 1:
            problems.append(
                f"{prefix}.serving.data_parallel: multi-server runs one engine over all its servers (vLLM's multi-node "
                f"runtime keeps a data-parallel engine's stages on one node), so data_parallel must be 1, got {dp}; "
                f"remove it, or use tier failover for an engine set per server"
            )
        elif pp != spec.server_count or tp != n:
            problems.append(
                f"{prefix}.serving: multi-server runs a pipeline stage per server and tensor parallelism inside each, "
                f"so pipeline_parallel must be {spec.server_count} (servers) and tensor_parallel {n} (gpu.count), "
                f"got {pp} and {tp}; remove both to take these defaults"
            )
    elif n % dp:
        options = ", ".join(str(d) for d in planner.divisors(n))
        problems.append(f"{prefix}.serving.data_parallel: {dp} engines do not share gpu.count {n} evenly; use one of {options}")
    elif tp * pp * dp != n:
        problems.append(
            f"{prefix}.serving: tensor_parallel {tp} x pipeline_parallel {pp} x data_parallel {dp} = {tp * pp * dp}, "
            f"but a server has {n} GPUs; make TP x PP x DP equal gpu.count"
        )
    if spec.network is not None and spec.tier != "multi-server":
        problems.append(f"{prefix}.network: only the multi-server tier takes a network section; remove it or set tier: multi-server")
    if spec.tier == "multi-server":
        net = spec.network_gate
        queue_ports = range(net.port_range_start, net.port_range_start + PORT_RANGE_SIZE)
        for name, port in (("serving.port", spec.serving.port), ("network.master_port", net.master_port)):
            if port in queue_ports:
                problems.append(
                    f"{prefix}.network.port_range_start: ports {queue_ports.start}-{queue_ports.stop - 1} hold {name} {port}; "
                    f"move the range"
                )
        if net.master_port == spec.serving.port:
            problems.append(f"{prefix}.network.master_port: {net.master_port} is serving.port too; pick another port")
    return problems


def _check_ports(spec: TierSpec, prefix: str) -> list[str]:
    """The serving ports against each other, SSH, HAProxy's stats and drain agent ports, and what vLLM may bind."""
    port, backend = spec.serving.port, spec.vllm_port
    taken = {SSH_PORT: "SSH"}
    if spec.failover is not None:  # HAProxy runs beside a VIP only
        taken[HAPROXY_STATS_PORT] = "HAProxy's statistics page"
        taken[DRAIN_AGENT_PORT] = "the drain agent"
    problems = []
    for used in dict.fromkeys((port, backend)):
        if used in taken:
            what = "the serving port" if used == port else f"vLLM's port behind HAProxy ({port}+1)"
            problems.append(f"{prefix}.serving.port: {used} is {what} and also {taken[used]}'s; pick another, e.g. 8000")
    if backend < FIRST_UNPRIVILEGED_PORT:
        problems.append(
            f"{prefix}.serving.port: vLLM would listen on {backend}, and it runs as an unprivileged user that can "
            f"bind only {FIRST_UNPRIVILEGED_PORT}-65535; pick a port from {FIRST_UNPRIVILEGED_PORT} up, e.g. 8000"
        )
    return problems


def _check_failover(spec: TierSpec, prefix: str) -> list[str]:
    """The failover section on the failover tier only; a VIP unless the provider balances load."""
    if spec.tier != "failover":
        if spec.failover is not None:
            return [f"{prefix}.failover: only the failover tier takes a failover section; remove it or set tier: failover"]
        return []
    if spec.failover is None and not providers.get(spec).load_balancer:
        return [f"{prefix}.failover.virtual_ip: the failover tier needs a virtual IP; add failover: {{virtual_ip: <free address in the hosts' subnet>}}"]
    return []


# Quantizations vLLM reads from the checkpoint (fp8 also quantizes a 16-bit one as it loads).
PREQUANTIZED = ("awq", "gptq", "int8")


def _check_model_fit(spec: TierSpec, prefix: str) -> list[str]:
    """TP divisibility, interconnect, quantization and context rules, then the planner's fit."""
    gpu, model = spec.gpu_info, spec.model_info
    tp, pp = spec.tensor_parallel, spec.pipeline_parallel
    problems = []
    for heads, what in ((model.attention_heads, "attention heads"), (model.kv_heads, "KV heads")):
        if heads % tp:
            divisors = [d for d in range(1, 9) if model.attention_heads % d == 0 and model.kv_heads % d == 0]
            problems.append(
                f"{prefix}.serving.tensor_parallel: {tp} does not divide the model's {heads} {what}; use one of {divisors}"
            )
            break
    if pp > model.layers:
        problems.append(
            f"{prefix}.serving.pipeline_parallel: {pp} stages for {model.key}'s {model.layers} layers; a stage needs a layer, "
            f"so use at most {model.layers}" + (" servers" if spec.tier == "multi-server" else "")
        )
    nvlinked = gpu.nvlink == "switch" or (gpu.nvlink == "bridge" and tp <= 2)
    if spec.gpu.interconnect == "nvlink" and gpu.nvlink == "none":
        problems.append(f"{prefix}.gpu.interconnect: {gpu.key} has no NVLink; set interconnect: pcie or choose an NVLink GPU")
    if tp > 1 and not nvlinked and not spec.serving.allow_pcie_tensor_parallel:
        engines = _more_engines(spec)
        problems.append(
            f"{prefix}.serving.tensor_parallel: {tp} needs NVLink between all {tp} GPUs, and {gpu.key} has "
            f"{'only bridged pairs' if gpu.nvlink == 'bridge' else 'none'}; use "
            + (f"data_parallel: {engines.data_parallel} with tensor_parallel: {engines.tensor_parallel} "
               f"({engines.data_parallel} engines that each hold the model), " if engines else "")
            + f"pipeline_parallel: {tp} with tensor_parallel: 1, or set allow_pcie_tensor_parallel: true"
        )
    quant = spec.model.quantization
    if quant in PREQUANTIZED and spec.model.key and not (spec.model.hf_id or spec.model.path):
        problems.append(
            f"{prefix}.model.quantization: {quant} needs a {quant} checkpoint, and {spec.model.key}'s is "
            f"{model.hf_id or 'unquantized'}; set model.hf_id (or model.path) to a {quant} checkpoint of it, or use fp8 or bf16"
        )
    need_cc = catalog.MIN_COMPUTE_CAPABILITY.get(quant)
    if need_cc and gpu.compute_capability < need_cc:
        problems.append(
            f"{prefix}.model.quantization: {quant} needs compute capability {need_cc}+ (Ada or newer), and {gpu.key} "
            f"has {gpu.compute_capability}; use int8, awq or gptq, or an Ada/Hopper/Blackwell GPU"
        )
    if spec.model.max_context and spec.model.max_context > model.default_context:
        problems.append(
            f"{prefix}.model.max_context: {spec.model.max_context} is longer than {model.key}'s {model.default_context}; "
            f"set max_context <= {model.default_context}"
        )
    if problems:
        return problems
    plan = plan_for_spec(spec)
    if plan.fits:
        return problems
    fix = planner.smallest_fix(
        model, quant, gpu, spec.gpu.count, spec.context, spec.serving.gpu_memory_utilization,
        spec.server_count, planner.shape_for_tier(spec.tier),
    )
    why = plan.notes[0] if plan.notes else "out of memory"
    layout = planner.Layout(tensor_parallel=tp, pipeline_parallel=pp, data_parallel=spec.data_parallel)
    if spec.data_parallel > 1 and not planner.engine_fits(
            model, quant, gpu, layout, spec.context, spec.serving.gpu_memory_utilization):
        best = planner.most_engines(model, quant, gpu, spec.gpu.count, spec.context, spec.serving.gpu_memory_utilization)
        share = best.tensor_parallel * best.pipeline_parallel
        if best.data_parallel < spec.data_parallel and plan_for_spec(spec, best).fits:
            fix = f"use data_parallel: {best.data_parallel} (engines of {share} GPU{'s' if share > 1 else ''} hold it)"
        problems.append(
            f"{prefix}.serving.data_parallel: {model.key} {quant} at context {spec.context} does not fit an engine of "
            f"{tp * pp}x {gpu.key} ({why}); {fix}"
        )
    else:
        if spec.data_parallel > 1 and plan_for_spec(spec, data_parallel=1).fits:
            fix = f"use data_parallel: 1 (one engine keeps one copy of the weights and more KV cache), or {fix.removeprefix('needs ')}"
        problems.append(
            f"{prefix}.model: {model.key} {quant} at context {spec.context} does not fit {spec.gpu.count}x {gpu.key}"
            f"{f' as {spec.data_parallel} engines' if spec.data_parallel > 1 else ''} ({why}); {fix}"
        )
    return problems


def _more_engines(spec: TierSpec) -> planner.Layout | None:
    """The most engines per server that each hold the model, when that is more than one."""
    if spec.tier == "multi-server":
        return None
    layout = planner.most_engines(spec.model_info, spec.model.quantization, spec.gpu_info, spec.gpu.count, spec.context,
                                  spec.serving.gpu_memory_utilization)
    return layout if layout.data_parallel > 1 else None


def layout_advice(spec: TierSpec) -> str | None:
    """The planner's layout when the spec's differs (a line for `tierkit validate`), else None."""
    if spec.tier == "multi-server":
        return None
    best = planner.recommended_layout(spec.model_info, spec.model.quantization, spec.gpu_info, spec.gpu.count,
                                      spec.context, spec.serving.gpu_memory_utilization)
    if (best.tensor_parallel, best.pipeline_parallel, best.data_parallel) == (
            spec.tensor_parallel, spec.pipeline_parallel, spec.data_parallel):
        return None
    mine, theirs = plan_for_spec(spec), plan_for_spec(spec, best)
    return (
        f"the planner recommends {best.label} ({theirs.engines} engine{'s' if theirs.engines > 1 else ''}: "
        f"{theirs.single_stream_tok_s:.0f} tok/s single stream, {theirs.expected_tok_s:.0f} with one stream per engine, "
        f"{theirs.max_users} users) over this spec's TP={spec.tensor_parallel} PP={spec.pipeline_parallel} "
        f"DP={spec.data_parallel} ({mine.single_stream_tok_s:.0f}, {mine.expected_tok_s:.0f}, {mine.max_users} users); "
        f"set serving: {{tensor_parallel: {best.tensor_parallel}, pipeline_parallel: {best.pipeline_parallel}, "
        f"data_parallel: {best.data_parallel}}} to take it"
    )


def plan_for_spec(spec: TierSpec, layout: planner.Layout | None = None, data_parallel: int | None = None) -> planner.Plan:
    """The plan for a validated tier spec (its GPUs, layout, context, users and shape); `layout`
    sizes another layout of its GPUs instead, `data_parallel` another engine count."""
    if layout is None and data_parallel is not None:
        layout = planner.engine_layout(spec.gpu_info, spec.model_info, spec.gpu.count, data_parallel)
    if layout is None:
        tp, pp, dp = spec.tensor_parallel, spec.pipeline_parallel, spec.data_parallel
    else:
        tp, pp, dp = layout.tensor_parallel, layout.pipeline_parallel, layout.data_parallel
    return planner.plan(
        spec.model_info,
        spec.model.quantization,
        spec.gpu_info,
        spec.gpu.count,
        spec.server_count,
        spec.context,
        spec.users,
        tp,
        pp,
        spec.serving.gpu_memory_utilization,
        planner.shape_for_tier(spec.tier),
        data_parallel=dp,
    )


def check_rules(spec: TierSpec, prefix: str = SPEC_KEY) -> list[str]:
    """All cross-field problems of a structurally valid spec, one line each."""
    problems = _check_catalog(spec, prefix)
    if problems:
        return problems
    problems = _check_shape(spec, prefix) + _check_ports(spec, prefix) + _check_failover(spec, prefix)
    if not problems:
        problems = providers.problems(spec, prefix)
    if not problems:
        problems = _check_model_fit(spec, prefix)
    return problems


_SECRET_WORDS = ("apikey", "api_key", "api-key", "token", "password", "passwd", "secret")


def secret_keys(data: Any, prefix: str, depth: int = 0) -> list[str]:
    """Paths of keys in `data` that name a secret (which belongs in Pulumi's secret config)."""
    if depth > safe_yaml.MAX_DEPTH:
        return []
    found = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        path = f"{prefix}[{key}]" if isinstance(key, int) else f"{prefix}.{key}"
        if isinstance(key, str) and any(word in key.lower() for word in _SECRET_WORDS):
            command = SECRET_CONFIG["tierkit:hfToken" if "token" in key.lower() else "tierkit:apiKey"]
            found.append(f"{_field_text(path)}: a secret does not belong in the spec (the stack file is plain text); "
                         f"remove it and run `{command}`")
        else:
            found += secret_keys(value, path, depth + 1)
    return found


def parse_spec(data: Any, prefix: str = SPEC_KEY) -> TierSpec:
    """Validate a plain dict into a TierSpec, or raise TierkitError with every problem."""
    if not isinstance(data, dict):
        raise TierkitError(f"{prefix}: expected a mapping (tier:, gpu:, model:, ...), got {excerpt(data)}; see stacks/ for examples")
    secrets = secret_keys(data, prefix)
    if secrets:
        raise TierkitError(*secrets)
    try:
        spec = TierSpec.model_validate(data)
    except ValidationError as exc:
        raise TierkitError(*[_describe(e, prefix) for e in exc.errors()]) from None
    problems = check_rules(spec, prefix)
    if problems:
        raise TierkitError(*problems)
    return spec


# ---------------------------------------------------------------------------------------------
# Reading stack files.


def project_root(start: Path | None = None) -> Path:
    """The directory holding Pulumi.yaml: `start` (default: the working directory) or a parent."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "Pulumi.yaml").is_file():
            return d
    raise TierkitError(f"--stack: no Pulumi.yaml in {here} or above; run from the tierkit project, or use --file PATH")


def stack_path(name: str, root: Path | None = None) -> Path:
    """`<stackConfigDir>/Pulumi.<name>.yaml`, as Pulumi.yaml's `stackConfigDir` says."""
    if not STACK_NAME.fullmatch(name):
        raise TierkitError(f"--stack: {excerpt(name)} is not a stack name; use letters, digits, '.', '_' and '-' (e.g. single-gpu)")
    root = project_root(root)
    project = safe_yaml.load_file(root / "Pulumi.yaml") or {}
    config_dir = project.get("stackConfigDir", ".") if isinstance(project, dict) else "."
    return root / str(config_dir) / f"Pulumi.{name}.yaml"


# Pulumi's stack names: letters, digits, '-', '_' and '.' (an org/project prefix is not a file name).
STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _read_yaml(path: Path) -> Any:
    try:
        text = safe_yaml.read_text(path)
    except FileNotFoundError:
        others = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in path.parent.glob("Pulumi.*.yaml"))
        hint = f"available stacks: {', '.join(others)}" if others else "create it (see stacks/ for examples)"
        raise TierkitError(f"{path}: no such stack file; {hint}") from None
    if not text.strip():
        raise TierkitError(f"{path}: the file is empty; add `config:` with `{SPEC_KEY}:` (see stacks/ for examples)")
    return safe_yaml.load(text, str(path))


def plaintext_secrets(config: dict[Any, Any], path: Path) -> list[str]:
    """Secret config keys given in plain text (Pulumi stores a secret as `{secure: ...}`)."""
    found = []
    for key, command in SECRET_CONFIG.items():
        value = config.get(key)
        if value is not None and not (isinstance(value, dict) and set(value) == {"secure"}):
            found.append(f"{path}: config.{key}: a secret in plain text; remove it and run `{command}` "
                         f"(it stores the value encrypted)")
    return found


def spec_data_from_stack_file(path: Path) -> Any:
    """The raw `tierkit:tier` value of a stack file (whose secrets must be encrypted)."""
    doc = _read_yaml(path)
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise TierkitError(f"{path}: config: missing or not a mapping; add `config:` with `{SPEC_KEY}:` under it")
    problems = plaintext_secrets(config, path)
    if SPEC_KEY not in config:
        problems.append(f"{path}: config.{SPEC_KEY}: missing; add the tier spec under config: {SPEC_KEY}: (see stacks/)")
    if problems:
        raise TierkitError(*problems)
    return config[SPEC_KEY]


def load_spec_file(path: str | Path) -> TierSpec:
    """Read and validate any stack file."""
    return parse_spec(spec_data_from_stack_file(Path(path)))


def load_stack(name: str, root: Path | None = None) -> TierSpec:
    """Read and validate `stacks/Pulumi.<name>.yaml` of the project at `root` (default: cwd)."""
    return load_spec_file(stack_path(name, root))
