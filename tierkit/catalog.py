"""Reference data: GPUs and models. Every figure carries its source.

Keys are lower-case, hyphenated (`rtx-pro-6000`, `llama-3.3-70b`). `lookup_gpu` and
`lookup_model` raise a one-line error with a "did you mean" for a misspelt key.
"""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tierkit.errors import TierkitError
from tierkit.safe_yaml import excerpt

NvlinkKind = Literal["none", "bridge", "switch"]
Quantization = Literal["fp16", "bf16", "fp8", "int8", "awq", "gptq"]

# Bytes per parameter for each quantization. Source: docs/planner.md#bytes-per-parameter
# (FP16/BF16 2, FP8/INT8 1, AWQ/GPTQ 4-bit about 0.5-0.56; the upper end covers group scales and
# the 16-bit embedding and output layers).
BYTES_PER_PARAM: dict[str, float] = {
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "awq": 0.56,
    "gptq": 0.56,
}

# Compute capability each quantization needs. fp8 needs Ada (8.9) or newer: vLLM's FP8 docs
# ("FP8 computation is supported on GPUs with compute capability > 8.9 (Ada Lovelace, Hopper)").
MIN_COMPUTE_CAPABILITY: dict[str, float] = {"fp8": 8.9}


class Gpu(BaseModel):
    """One GPU model as tierkit sizes and simulates it."""

    model_config = ConfigDict(frozen=True)

    key: str
    smi_name: str  # what `nvidia-smi --query-gpu=name` prints (the lab simulates this one)
    smi_aliases: tuple[str, ...] = ()  # other names it prints for editions of the same GPU
    vram_mib: int  # what `nvidia-smi --query-gpu=memory.total` prints
    bandwidth_gbs: float  # memory bandwidth, GB/s
    compute_capability: float
    nvlink: NvlinkKind  # none: PCIe only; bridge: NVLink bridges join pairs; switch: NVSwitch
    nvlink_links: int  # links bonded between two NVLinked GPUs (the N of NV#); 0 when none
    nvlink_link_gbs: float  # per-link bandwidth as `nvidia-smi nvlink -s` prints it, GB/s
    fabric_manager: bool  # NVSwitch systems need nvidia-fabricmanager at the driver's version
    nccl_busbw_gbs: float  # expected all_reduce_perf busbw for this GPU's usual box, GB/s
    nccl_busbw_gpus: int  # the GPU count that expectation was measured on

    @property
    def smi_names(self) -> tuple[str, ...]:
        """Every name `nvidia-smi --query-gpu=name` prints for this GPU (docs/nvidia.md)."""
        return (self.smi_name, *self.smi_aliases)

    @property
    def vram_gib(self) -> float:
        return self.vram_mib / 1024


# Sources (per field): vram_mib is the nvidia-smi `memory.total` of the card; bandwidths are
# NVIDIA's published figures (docs/planner.md#gpu-reference-data); NVLink kinds and link counts are
# docs/topology.md#nvlink-per-gpu-model; busbw expectations are docs/topology.md#nccl-bandwidth-expectations.
GPUS: dict[str, Gpu] = {
    g.key: g
    for g in (
        # GeForce RTX 5090: 32 GB GDDR7, 1792 GB/s, no NVLink (NVIDIA spec page). PCIe-only
        # consumer box busbw 28-35 GB/s (docs/topology.md#nccl-bandwidth-expectations).
        Gpu(key="rtx-5090", smi_name="NVIDIA GeForce RTX 5090", vram_mib=32607,
            bandwidth_gbs=1792, compute_capability=12.0, nvlink="none", nvlink_links=0,
            nvlink_link_gbs=0, fabric_manager=False, nccl_busbw_gbs=28, nccl_busbw_gpus=2),
        # RTX PRO 6000 Blackwell: 96 GB GDDR7, 1792 GB/s, no NVLink (NVIDIA datasheet). The
        # Server Edition and the Max-Q Workstation Edition print their own names.
        Gpu(key="rtx-pro-6000", smi_name="NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
            smi_aliases=("NVIDIA RTX PRO 6000 Blackwell Server Edition",
                         "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition"),
            vram_mib=97887, bandwidth_gbs=1792, compute_capability=12.0, nvlink="none",
            nvlink_links=0, nvlink_link_gbs=0, fabric_manager=False, nccl_busbw_gbs=35,
            nccl_busbw_gpus=2),
        # RTX 6000 Ada: 48 GB GDDR6, 960 GB/s, no NVLink (NVIDIA datasheet).
        Gpu(key="rtx-6000-ada", smi_name="NVIDIA RTX 6000 Ada Generation", vram_mib=49140,
            bandwidth_gbs=960, compute_capability=8.9, nvlink="none", nvlink_links=0,
            nvlink_link_gbs=0, fabric_manager=False, nccl_busbw_gbs=28, nccl_busbw_gpus=2),
        # L40S: 48 GB GDDR6, 864 GB/s, PCIe only (NVIDIA L40S datasheet).
        Gpu(key="l40s", smi_name="NVIDIA L40S", vram_mib=46068, bandwidth_gbs=864,
            compute_capability=8.9, nvlink="none", nvlink_links=0, nvlink_link_gbs=0,
            fabric_manager=False, nccl_busbw_gbs=28, nccl_busbw_gpus=2),
        # RTX 4090: 24 GB GDDR6X, 1008 GB/s, Ada (8.9), no NVLink (NVIDIA GeForce RTX 4090 spec
        # page); nvidia-smi reports 24564 MiB. PCIe-only consumer box busbw as the RTX 5090's.
        Gpu(key="rtx-4090", smi_name="NVIDIA GeForce RTX 4090", vram_mib=24564,
            bandwidth_gbs=1008, compute_capability=8.9, nvlink="none", nvlink_links=0,
            nvlink_link_gbs=0, fabric_manager=False, nccl_busbw_gbs=28, nccl_busbw_gpus=2),
        # RTX 3090 Ti: 24 GB GDDR6X, 1008 GB/s, Ampere (8.6), an NVLink bridge joins pairs (NV4)
        # (NVIDIA GeForce RTX 3090 Ti spec page); PCIe consumer box busbw as above.
        Gpu(key="rtx-3090-ti", smi_name="NVIDIA GeForce RTX 3090 Ti", vram_mib=24564,
            bandwidth_gbs=1008, compute_capability=8.6, nvlink="bridge", nvlink_links=4,
            nvlink_link_gbs=14.062, fabric_manager=False, nccl_busbw_gbs=28, nccl_busbw_gpus=2),
        # A100 40GB SXM: 1555 GB/s HBM2 (NVIDIA A100 datasheet); HGX NVSwitch like the 80 GB part.
        Gpu(key="a100-40g-sxm", smi_name="NVIDIA A100-SXM4-40GB", vram_mib=40960,
            bandwidth_gbs=1555, compute_capability=8.0, nvlink="switch", nvlink_links=12,
            nvlink_link_gbs=25.0, fabric_manager=True, nccl_busbw_gbs=200, nccl_busbw_gpus=8),
        # A100 80GB SXM: 2039 GB/s; HGX A100 is NV12 all pairs over NVSwitch, 25 GB/s per link;
        # ~200 GB/s busbw on 8 GPUs (docs/topology.md#nccl-bandwidth-expectations).
        Gpu(key="a100-80g-sxm", smi_name="NVIDIA A100-SXM4-80GB", vram_mib=81920,
            bandwidth_gbs=2039, compute_capability=8.0, nvlink="switch", nvlink_links=12,
            nvlink_link_gbs=25.0, fabric_manager=True, nccl_busbw_gbs=200, nccl_busbw_gpus=8),
        # A100 80GB PCIe: 1935 GB/s; pairs joined by three NVLink bridges (NV12), 25 GB/s per link.
        Gpu(key="a100-80g-pcie", smi_name="NVIDIA A100 80GB PCIe", vram_mib=81920,
            bandwidth_gbs=1935, compute_capability=8.0, nvlink="bridge", nvlink_links=12,
            nvlink_link_gbs=25.0, fabric_manager=False, nccl_busbw_gbs=100, nccl_busbw_gpus=2),
        # H100 PCIe: 80 GB HBM2e, 2000 GB/s (NVIDIA H100 datasheet); NVLink bridge pairs (NV12);
        # ~116 GB/s busbw on 2 GPUs with the bridge (docs/topology.md#nccl-bandwidth-expectations).
        Gpu(key="h100-pcie", smi_name="NVIDIA H100 PCIe", vram_mib=81559, bandwidth_gbs=2000,
            compute_capability=9.0, nvlink="bridge", nvlink_links=12, nvlink_link_gbs=26.562,
            fabric_manager=False, nccl_busbw_gbs=116, nccl_busbw_gpus=2),
        # H100 SXM: 3350 GB/s; NV18 all pairs, 26.562 GB/s per link (captured `nvlink -s`);
        # 370-480 GB/s busbw on 8 GPUs (docs/topology.md#nccl-bandwidth-expectations).
        Gpu(key="h100-sxm", smi_name="NVIDIA H100 80GB HBM3", vram_mib=81559,
            bandwidth_gbs=3350, compute_capability=9.0, nvlink="switch", nvlink_links=18,
            nvlink_link_gbs=26.562, fabric_manager=True, nccl_busbw_gbs=370, nccl_busbw_gpus=8),
        # H200: 141 GB HBM3e, 4800 GB/s; NV18 over NVSwitch like H100 SXM
        # (docs/topology.md#nvlink-per-gpu-model).
        Gpu(key="h200", smi_name="NVIDIA H200", vram_mib=143771, bandwidth_gbs=4800,
            compute_capability=9.0, nvlink="switch", nvlink_links=18, nvlink_link_gbs=26.562,
            fabric_manager=True, nccl_busbw_gbs=370, nccl_busbw_gpus=8),
    )
}


class Model(BaseModel):
    """A model's shape: what sizing needs (weights, KV cache per token, TP divisibility)."""

    model_config = ConfigDict(frozen=True)

    key: str
    hf_id: str | None = None
    params_b: float
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    default_context: int

    def kv_bytes_per_token(self, kv_dtype_bytes: float = 2.0) -> float:
        """KV cache bytes per token = 2 x layers x kv_heads x head_dim x dtype bytes.

        docs/planner.md#kv-cache-per-token
        """
        return 2 * self.layers * self.kv_heads * self.head_dim * kv_dtype_bytes


# Sources: each model's config.json on its Hugging Face page (num_hidden_layers, hidden_size,
# num_attention_heads, num_key_value_heads, max_position_embeddings); parameter counts from the
# model cards.
MODELS: dict[str, Model] = {
    m.key: m
    for m in (
        Model(key="llama-3.1-8b", hf_id="meta-llama/Llama-3.1-8B-Instruct", params_b=8.03,
              layers=32, hidden_size=4096, attention_heads=32, kv_heads=8, head_dim=128,
              default_context=131072),
        Model(key="llama-3.3-70b", hf_id="meta-llama/Llama-3.3-70B-Instruct", params_b=70.6,
              layers=80, hidden_size=8192, attention_heads=64, kv_heads=8, head_dim=128,
              default_context=131072),
        Model(key="llama-3.1-405b", hf_id="meta-llama/Llama-3.1-405B-Instruct", params_b=405.8,
              layers=126, hidden_size=16384, attention_heads=128, kv_heads=8, head_dim=128,
              default_context=131072),
        # Qwen3 dense models (model cards: parameters, layers, query/KV heads, native context
        # 32,768; config.json: hidden_size, head_dim 128). The small ones anchor the planner's fixed
        # per-token cost in tests/unit/data/planner_reference.yaml.
        Model(key="qwen3-0.6b", hf_id="Qwen/Qwen3-0.6B", params_b=0.6, layers=28, hidden_size=1024,
              attention_heads=16, kv_heads=8, head_dim=128, default_context=32768),
        Model(key="qwen3-1.7b", hf_id="Qwen/Qwen3-1.7B", params_b=1.7, layers=28, hidden_size=2048,
              attention_heads=16, kv_heads=8, head_dim=128, default_context=32768),
        Model(key="qwen3-4b", hf_id="Qwen/Qwen3-4B", params_b=4.0, layers=36, hidden_size=2560,
              attention_heads=32, kv_heads=8, head_dim=128, default_context=32768),
        Model(key="qwen3-14b", hf_id="Qwen/Qwen3-14B", params_b=14.8, layers=40, hidden_size=5120,
              attention_heads=40, kv_heads=8, head_dim=128, default_context=32768),
        Model(key="qwen2.5-72b", hf_id="Qwen/Qwen2.5-72B-Instruct", params_b=72.7, layers=80,
              hidden_size=8192, attention_heads=64, kv_heads=8, head_dim=128,
              default_context=32768),
        # The lab's tiny Llama, generated locally by tierkit.localvllm (docs/lab.md#the-tiny-model):
        # hidden 128, 2 layers, 4 heads, MLP 512, vocabulary 512, untied head: 656,000
        # parameters (tierkit.localvllm.tiny_model.llama_parameter_count; a unit test checks it).
        Model(key="tiny-llama", hf_id=None, params_b=0.000656, layers=2, hidden_size=128,
              attention_heads=4, kv_heads=4, head_dim=32, default_context=512),
    )
}


def close_match(key: str, known: dict[str, object]) -> str | None:
    """The closest known key to a misspelt one, if any is close."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    return close[0] if close else None


def unknown_key_hint(key: str, known: dict[str, object]) -> str:
    """`did you mean 'x'?`, or the list of valid keys when nothing is close."""
    close = close_match(key, known)
    return f"did you mean {close!r}?" if close else f"choose one of: {', '.join(sorted(known))}"


def unknown_key(kind: str, field: str, key: str, known: dict[str, object]) -> str:
    """The one-line problem for a key that is not in `known`: `<field>: unknown <kind> 'x'; <hint>`."""
    return f"{field}: unknown {kind} {excerpt(key)}; {unknown_key_hint(key[:64], known)}"


def lookup_gpu(key: str, field: str = "gpu.model") -> Gpu:
    """The catalog GPU for `key`, or a one-line error naming `field` with a close match."""
    try:
        return GPUS[key]
    except KeyError:
        raise TierkitError(unknown_key("GPU", field, key, GPUS)) from None


def lookup_model(key: str, field: str = "model.key") -> Model:
    """The catalog model for `key`, or a one-line error naming `field` with a close match."""
    try:
        return MODELS[key]
    except KeyError:
        raise TierkitError(unknown_key("model", field, key, MODELS)) from None
