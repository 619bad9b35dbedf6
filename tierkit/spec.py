"""The tier spec: what a platform team wants served, as pydantic models, validated to one-line errors.

A stack file (`stacks/Pulumi.<stack>.yaml`) holds the spec under the config key `tierkit:tier`.
`load_stack` / `load_spec_file` read it; `parse_spec` validates a plain dict. Every problem comes
out as `<field path>: <what is wrong>; <how to fix>` inside one `TierkitError`, and nothing is
touched before the whole spec is valid.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tierkit import catalog, planner, providers
from tierkit.errors import TierkitError
from tierkit.smoke import defaults as smoke_defaults

SPEC_KEY = "tierkit:tier"
TierKind = Literal["single-gpu", "multi-gpu", "failover", "multi-server"]
Interconnect = Literal["nvlink", "pcie", "any"]

# GPUs per server, and servers, each tier allows (inclusive ranges). multi-server splits one model
# across its servers: a pipeline stage per server, tensor parallelism inside each.
TIER_GPUS: dict[str, tuple[int, int]] = {"single-gpu": (1, 1), "multi-gpu": (2, 8), "failover": (1, 8), "multi-server": (1, 8)}
TIER_SERVERS: dict[str, tuple[int, int]] = {"single-gpu": (1, 1), "multi-gpu": (1, 1), "failover": (2, 2), "multi-server": (2, 8)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# What runs on the servers.


class GpuSpec(_Strict):
    model: str = Field(description="catalog GPU key, e.g. rtx-pro-6000, h100-sxm")
    count: int = Field(ge=1, le=8, description="GPUs per server")
    interconnect: Interconnect = Field("any", description="required link between the GPUs")


class ModelSpec(_Strict):
    """A catalog model (`key`), or one given by its numbers; weights from hf_id or a local path."""

    key: str | None = Field(None, description="catalog model key, e.g. llama-3.3-70b")
    hf_id: str | None = Field(None, description="Hugging Face id to download (default: the catalog's)")
    path: str | None = Field(None, description="model directory already on the servers")
    params_b: float | None = Field(None, gt=0)
    layers: int | None = Field(None, gt=0)
    hidden_size: int | None = Field(None, gt=0)
    attention_heads: int | None = Field(None, gt=0)
    kv_heads: int | None = Field(None, gt=0)
    head_dim: int | None = Field(None, gt=0)
    quantization: catalog.Quantization = "bf16"
    max_context: int | None = Field(None, gt=0, description="tokens; default: planner.default_context")


class ServingSpec(_Strict):
    tensor_parallel: int | None = Field(None, ge=1, le=8, description="default: GPUs per server / (PP x DP)")
    pipeline_parallel: int | None = Field(None, ge=1, le=8, description="default: 1, or the servers on multi-server")
    data_parallel: int = Field(1, ge=1, le=8, description="engines per server, each on TP x PP GPUs (vLLM --data-parallel-size)")
    port: int = Field(8000, ge=1, le=65535)
    max_num_seqs: int = Field(64, ge=1)
    gpu_memory_utilization: float = Field(planner.DEFAULT_UTILIZATION, gt=0, le=1)
    served_model_name: str | None = Field(None, description="default: the model key or directory name")
    extra_args: list[str] = Field(default_factory=list, description="extra vLLM flags, passed through")
    allow_pcie_tensor_parallel: bool = Field(False, description="allow TP > 1 without NVLink")
    nccl_p2p_disable: bool = Field(False, description="NCCL_P2P_DISABLE=1 (PCIe IOMMU/ACS hangs)")
    allowed_sources: list[ipaddress.IPv4Network] | None = Field(
        None, description="CIDRs that may reach vLLM's port off the failover tier; default: the provider's "
                          "(the operator's address on baremetal, the default VPC and ssh_cidr on aws)")


class SmokeSpec(_Strict):
    concurrency: int = Field(smoke_defaults.CONCURRENCY, ge=1)
    requests: int = Field(smoke_defaults.REQUESTS, ge=1)
    input_len: int = Field(smoke_defaults.INPUT_LEN, ge=1)
    output_len: int = Field(smoke_defaults.OUTPUT_LEN, ge=1)
    warmup: int = Field(smoke_defaults.WARMUP, ge=0)
    min_output_tok_s: float | Literal["derive"] = Field("derive", description="a number, or 'derive' from the plan")
    max_p99_ttft_ms: float | None = Field(None, gt=0)
    max_p99_tpot_ms: float | None = Field(None, gt=0)
    max_failed: int = Field(smoke_defaults.MAX_FAILED, ge=0)


class FailoverSpec(_Strict):
    virtual_ip: ipaddress.IPv4Address
    router_id: int = Field(51, ge=1, le=255, description="VRRP virtual router id")
    advert_int: int = Field(1, ge=1, le=255, description="VRRP advert interval, seconds")


PORT_RANGE_SIZE = 100  # ports vLLM's message queues may bind from network.port_range_start


class NetworkSpec(_Strict):
    """The network gate of a multi-server tier: every pair of servers measured before serving."""

    min_gbps: float | None = Field(None, gt=0, description="floor per link; default from the split (docs/multi-server.md)")
    iperf_seconds: int = Field(3, ge=1, le=60, description="iperf3 run per link, seconds")
    master_port: int = Field(29501, ge=1024, le=65535, description="torch.distributed rendezvous port on the head")
    port_range_start: int = Field(29600, ge=1024, le=65535 - 99, description="first of 100 ports vLLM's message queues bind (VLLM_PORT)")


class TierSpec(_Strict):
    """The whole tier spec (the value of `tierkit:tier`)."""

    tier: TierKind
    provider: providers.ProviderConfig = Field(default_factory=providers.default_config)
    gpu: GpuSpec
    model: ModelSpec
    serving: ServingSpec = Field(default_factory=ServingSpec)
    smoke: SmokeSpec = Field(default_factory=SmokeSpec)
    failover: FailoverSpec | None = None
    network: NetworkSpec | None = Field(None, description="multi-server only; default: NetworkSpec()")
    servers: int | None = Field(None, ge=1, description="default: 1, or 2 for failover and multi-server")
    users: int | None = Field(None, ge=1, description="concurrent users to size for")

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


def _loc(prefix: str, loc: tuple[Any, ...]) -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item in providers.PROVIDERS:  # discriminated-union tags add no information
            continue
        else:
            parts.append(str(item))
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
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{path}: {given!r} is not allowed; use one of {expected}"
    if kind == "union_tag_invalid":
        return f"{path}: unknown kind {err.get('ctx', {}).get('tag')!r}; use one of {', '.join(providers.PROVIDERS)}"
    if kind == "union_tag_not_found":
        return f"{path}: kind is missing; add kind: {' or '.join(providers.PROVIDERS)}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{path}: {err['msg'].lower()}, got {given!r}; change the value"
    if kind == "string_pattern_mismatch":
        return f"{path}: {given!r} is not well formed (expected {err.get('ctx', {}).get('pattern')}); fix the value"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{path}: {err['msg'].lower()}, got {given!r}; fix the value's type"
    return f"{path}: {err['msg']}; fix the value"


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


def _check_failover(spec: TierSpec, prefix: str) -> list[str]:
    """The failover section on the failover tier only; a VIP unless the provider balances load."""
    if spec.tier != "failover":
        if spec.failover is not None:
            return [f"{prefix}.failover: only the failover tier takes a failover section; remove it or set tier: failover"]
        return []
    if spec.failover is None and not providers.get(spec).load_balancer:
        return [f"{prefix}.failover.virtual_ip: the failover tier needs a virtual IP; add failover: {{virtual_ip: <free address in the hosts' subnet>}}"]
    return []


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
    problems = _check_shape(spec, prefix) + _check_failover(spec, prefix)
    if not problems:
        problems = providers.problems(spec, prefix)
    if not problems:
        problems = _check_model_fit(spec, prefix)
    return problems


def parse_spec(data: Any, prefix: str = SPEC_KEY) -> TierSpec:
    """Validate a plain dict into a TierSpec, or raise TierkitError with every problem."""
    if not isinstance(data, dict):
        raise TierkitError(f"{prefix}: expected a mapping (tier:, gpu:, model:, ...), got {type(data).__name__}; see stacks/ for examples")
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
    root = project_root(root)
    project = yaml.safe_load((root / "Pulumi.yaml").read_text()) or {}
    return root / project.get("stackConfigDir", ".") / f"Pulumi.{name}.yaml"


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        others = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in path.parent.glob("Pulumi.*.yaml"))
        hint = f"available stacks: {', '.join(others)}" if others else "create it (see stacks/ for examples)"
        raise TierkitError(f"{path}: no such stack file; {hint}") from None
    except OSError as exc:
        raise TierkitError(f"{path}: cannot read ({exc.strerror}); check the path and permissions") from None
    if not text.strip():
        raise TierkitError(f"{path}: the file is empty; add `config:` with `{SPEC_KEY}:` (see stacks/ for examples)")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TierkitError(f"{path}{where}: YAML syntax error ({what}); fix the syntax") from None


def spec_data_from_stack_file(path: Path) -> Any:
    """The raw `tierkit:tier` value of a stack file."""
    doc = _read_yaml(path)
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise TierkitError(f"{path}: config: missing or not a mapping; add `config:` with `{SPEC_KEY}:` under it")
    if SPEC_KEY not in config:
        raise TierkitError(f"{path}: config.{SPEC_KEY}: missing; add the tier spec under config: {SPEC_KEY}: (see stacks/)")
    return config[SPEC_KEY]


def load_spec_file(path: str | Path) -> TierSpec:
    """Read and validate any stack file."""
    return parse_spec(spec_data_from_stack_file(Path(path)))


def load_stack(name: str, root: Path | None = None) -> TierSpec:
    """Read and validate `stacks/Pulumi.<name>.yaml` of the project at `root` (default: cwd)."""
    return load_spec_file(stack_path(name, root))
