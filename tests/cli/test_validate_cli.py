"""Bad specs: each prints one `error: <field>: <what>; <fix>` line per problem, exits 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from spec_helpers import BASE, changed, stack_text

pytestmark = pytest.mark.cli

KEY = str(Path(__file__).resolve())  # a readable file as the hosts' key: validate checks it exists
FAILOVER = changed(tier="failover", provider={"kind": "baremetal", "hosts": [
    {"name": "a", "address": "192.0.2.10", "key_path": KEY}, {"name": "b", "address": "192.0.2.11", "key_path": KEY}]})

# name -> (file text, substrings the error output must contain)
CORPUS: dict[str, tuple[str, list[str]]] = {
    "unknown key": (stack_text({**BASE, "gpus": {"count": 1}}), ["tierkit:tier.gpus: unknown key", "did you mean 'gpu'"]),
    "unknown nested key": (stack_text(changed(serving__tensor_paralel=1)), ["tierkit:tier.serving.tensor_paralel: unknown key", "'tensor_parallel'"]),
    "wrong type": (stack_text(changed(gpu__count="four")), ["tierkit:tier.gpu.count:", "'four'"]),
    "unknown gpu": (stack_text(changed(gpu__model="h100-sxn")), ["tierkit:tier.gpu.model: unknown GPU 'h100-sxn'", "did you mean 'h100-sxm'"]),
    "unknown model": (stack_text(changed(model__key="llama-3.3-70")), ["tierkit:tier.model.key", "did you mean 'llama-3.3-70b'"]),
    "model too big": (stack_text(changed(model__key="llama-3.3-70b")), ["tierkit:tier.model: llama-3.3-70b bf16", "needs 2x rtx-pro-6000 or quantization fp8"]),
    "tp not dividing heads": (stack_text(changed(tier="multi-gpu", gpu={"model": "h100-sxm", "count": 3}, model={"key": "tiny-llama"})),
                              ["tierkit:tier.serving.tensor_parallel: 3 does not divide", "use one of [1, 2, 4]"]),
    "single-gpu with 2 gpus": (stack_text(changed(gpu__count=2)), ["tierkit:tier.gpu.count: single-gpu means exactly 1 GPU", "use tier multi-gpu"]),
    "failover without vip": (stack_text(FAILOVER), ["tierkit:tier.failover.virtual_ip: the failover tier needs a virtual IP"]),
    "vip equals a host": (stack_text({**FAILOVER, "failover": {"virtual_ip": "192.0.2.10"}}), ["virtual_ip: 192.0.2.10 is a host's own address"]),
    "vip outside subnet": (stack_text({**FAILOVER, "failover": {"virtual_ip": "198.51.100.7"}}), ["virtual_ip: 198.51.100.7 is outside the hosts' subnet"]),
    "zero count": (stack_text(changed(gpu__count=0)), ["tierkit:tier.gpu.count: input should be greater than or equal to 1, got 0"]),
    "negative count": (stack_text(changed(smoke={"concurrency": -4})), ["tierkit:tier.smoke.concurrency: input should be greater than or equal to 1, got -4"]),
    "empty file": ("", ["the file is empty"]),
    "yaml syntax error": ("config:\n  tierkit:tier: {tier: single-gpu\n  other: [\n", ["YAML syntax error"]),
    "missing tierkit:tier": (yaml.safe_dump({"config": {"tierkit:other": 1}}), ["config.tierkit:tier: missing"]),
    "fp8 on ampere": (stack_text(changed(gpu__model="a100-80g-sxm", model__quantization="fp8")),
                      ["tierkit:tier.model.quantization: fp8 needs compute capability 8.9+", "a100-80g-sxm"]),
    "context too long": (stack_text(changed(model={"key": "tiny-llama", "max_context": 4096})),
                         ["tierkit:tier.model.max_context: 4096 is longer than tiny-llama's 512"]),
    "tp x pp mismatch": (stack_text(changed(tier="multi-gpu", gpu={"model": "h100-sxm", "count": 4},
                                                 serving={"tensor_parallel": 2, "pipeline_parallel": 1})),
                         ["tierkit:tier.serving: tensor_parallel 2 x pipeline_parallel 1 x data_parallel 1 = 2, but a server has 4 GPUs"]),
    "engines not sharing the gpus": (stack_text(changed(tier="multi-gpu", gpu={"model": "rtx-pro-6000", "count": 4},
                                                             serving={"data_parallel": 3})),
                                     ["tierkit:tier.serving.data_parallel: 3 engines do not share gpu.count 4 evenly; use one of 1, 2, 4"]),
    "engines too small for the model": (
        stack_text(changed(tier="multi-gpu", gpu={"model": "rtx-pro-6000", "count": 4}, model={"key": "llama-3.3-70b"},
                                serving={"data_parallel": 4})),
        ["tierkit:tier.serving.data_parallel: llama-3.3-70b bf16 at context 8192 does not fit an engine of 1x rtx-pro-6000",
         "use data_parallel: 2 (engines of 2 GPUs hold it)"]),
    "pcie tensor parallel names the engines that fit": (
        stack_text(changed(tier="multi-gpu", gpu={"model": "rtx-pro-6000", "count": 4},
                                model={"key": "llama-3.3-70b", "quantization": "awq"})),
        ["tierkit:tier.serving.tensor_parallel: 4 needs NVLink", "use data_parallel: 4 with tensor_parallel: 1"]),
    "data parallel on multi-server": (stack_text(changed(tier="multi-server", serving={"data_parallel": 2})),
                                      ["tierkit:tier.serving.data_parallel: multi-server runs one engine over all its servers"]),
    "pcie tensor parallel": (stack_text(changed(tier="multi-gpu", gpu={"model": "l40s", "count": 2})),
                             ["tierkit:tier.serving.tensor_parallel: 2 needs NVLink", "pipeline_parallel: 2"]),
    "bad quantization": (stack_text(changed(model__quantization="q4")), ["tierkit:tier.model.quantization: 'q4' is not allowed"]),
    "unknown provider key": (stack_text(changed(provider={"kind": "baremetal", "hosts": [{"name": "a", "adress": "x", "key_path": "/k"}]})),
                             ["tierkit:tier.provider.hosts[0].adress: unknown key; did you mean 'address'"]),
    "lab-only model on bare metal": (stack_text(changed(provider={"kind": "baremetal", "hosts": [{"name": "a", "address": "192.0.2.10", "key_path": "/k"}]},
                                                             model={"key": "tiny-llama"})),
                                    ["tierkit:tier.model.key: tiny-llama has no weights outside the lab", "set model.hf_id or model.path"]),
    "unknown provider kind": (stack_text(changed(provider={"kind": "gcp"})), ["tierkit:tier.provider: unknown kind 'gcp'"]),
    "multi-server on one server": (stack_text(changed(tier="multi-server", servers=1)),
                                   ["tierkit:tier.servers: multi-server means 2-8 servers, got 1"]),
    "multi-server with tp across servers": (
        stack_text(changed(tier="multi-server", gpu={"model": "h100-sxm", "count": 2},
                                serving={"tensor_parallel": 4, "pipeline_parallel": 1})),
        ["tierkit:tier.serving: multi-server runs a pipeline stage per server", "pipeline_parallel must be 2 (servers) "
         "and tensor_parallel 2 (gpu.count), got 1 and 4"]),
    "network section off multi-server": (stack_text(changed(network={"min_gbps": 5})),
                                         ["tierkit:tier.network: only the multi-server tier takes a network section"]),
    "message queue ports hold the api port": (
        stack_text(changed(tier="multi-server", network={"port_range_start": 7950})),
        ["tierkit:tier.network.port_range_start: ports 7950-8049 hold serving.port 8000"]),
    "more stages than layers": (stack_text(changed(tier="multi-server", servers=3, model={"key": "tiny-llama"})),
                                ["tierkit:tier.serving.pipeline_parallel: 3 stages for tiny-llama's 2 layers", "at most 2 servers"]),
    "zero floor": (stack_text(changed(tier="multi-server", network={"min_gbps": 0})),
                   ["tierkit:tier.network.min_gbps: input should be greater than 0, got 0"]),
}


def run_validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierkit", "validate", *args], capture_output=True, text=True)


@pytest.mark.parametrize("name", CORPUS)
def test_bad_spec(name: str, tmp_path: Path) -> None:
    text, expected = CORPUS[name]
    f = tmp_path / "Pulumi.bad.yaml"
    f.write_text(text)
    result = run_validate("--file", str(f))
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") and "; " in line for line in lines), lines
    for needle in expected:
        assert needle in result.stderr, (needle, result.stderr)


def test_missing_stack_file_lists_the_stacks_there() -> None:
    result = run_validate("--stack", "nope")
    assert result.returncode == 2
    assert "Pulumi.nope.yaml: no such stack file; available stacks: failover, multi-gpu, multi-server, single-gpu" in result.stderr


def test_every_problem_gets_its_own_line(tmp_path: Path) -> None:
    f = tmp_path / "Pulumi.two.yaml"
    f.write_text(stack_text({**BASE, "gpus": 1, "users": 0}))
    lines = run_validate("--file", str(f)).stderr.strip().splitlines()
    assert len(lines) == 2, lines


@pytest.mark.parametrize("stack", ["single-gpu", "multi-gpu", "failover", "multi-server"])
def test_shipped_stacks_validate(stack: str) -> None:
    result = run_validate("--stack", stack)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {stack} on lab:")
