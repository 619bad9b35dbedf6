"""Hostile stack files: each gets exit 2 and one short `error:` line per problem, fast, never a
traceback; valid specs beside them still pass.

Cases: encodings, YAML bombs and tricks, numbers at every edge, injection into every field that
reaches an inventory, a unit, a config file or a command line, secrets where they do not belong.
`KEYFILE` in a case stands for a readable SSH key made for the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hostile_support import assert_refused, run_cli
from spec_helpers import BASE, changed, stack_text

LAB_FO = {
    "tier": "failover",
    "provider": {"kind": "lab", "name": "ha", "subnet": "10.77.40.0/24"},
    "gpu": {"model": "rtx-pro-6000", "count": 1},
    "model": {"key": "tiny-llama", "max_context": 512},
    "failover": {"virtual_ip": "10.77.40.100"},
}
BM_HOSTS = [{"name": "gpu-a", "address": "192.0.2.10", "user": "ubuntu", "key_path": "KEYFILE"},
            {"name": "gpu-b", "address": "192.0.2.11", "user": "ubuntu", "key_path": "KEYFILE"}]
# tiny-llama has no weights outside the lab: a bare-metal pair serves it from a directory
BM_FO = {**LAB_FO, "provider": {"kind": "baremetal", "hosts": BM_HOSTS}, "failover": {"virtual_ip": "192.0.2.100"},
         "model": {"key": "tiny-llama", "max_context": 512, "path": "/srv/models/tiny-llama"}}
BM_ONE = {**BASE, "provider": {"kind": "baremetal", "hosts": BM_HOSTS[:1]}}
AWS = {**BASE, "provider": {"kind": "aws", "region": "us-east-1", "ssh_cidr": "203.0.113.0/24",
                            "public_key_path": "KEYFILE", "private_key_path": "KEYFILE"}}


def host(**changes: object) -> dict:
    return {**BM_HOSTS[0], **changes}


def bm(*hosts: dict, base: dict = BM_ONE) -> str:
    return stack_text({**base, "provider": {"kind": "baremetal", "hosts": list(hosts)}})


def bomb(levels: int, width: int) -> str:
    """A "billion laughs": each anchor a list of `width` aliases of the one before."""
    lines = ["config:", f"  a0: &a0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    lines.append(f"  tierkit:tier: *a{levels - 1}")
    return "\n".join(lines) + "\n"


GOOD_TEXT = stack_text(BASE)
SERVING = "tierkit:tier.serving"

# name -> (file content, substrings the errors must contain)
CASES: dict[str, tuple[str | bytes, list[str]]] = {
    # --- encodings and files
    "latin-1 byte": (GOOD_TEXT.replace("llama-3.1-8b", "caf\xe9").encode("latin-1"), ["byte 0xe9 is not UTF-8", "save the file as UTF-8"]),
    "utf-16 file": (GOOD_TEXT.encode("utf-16"), ["UTF-16 text; save the file as UTF-8"]),
    "utf-16-be without bom": (GOOD_TEXT.encode("utf-16-be"), ["character #x0000 is not allowed in YAML", "save the file as UTF-8"]),
    "nul byte": (GOOD_TEXT.replace("single-gpu", "single\x00gpu"), ["character #x0000 is not allowed in YAML"]),
    "two megabytes": ("#" * (2 << 20), ["larger than 1024 KiB"]),
    "empty": ("", ["the file is empty"]),
    "only a comment": ("# nothing\n", ["config: missing or not a mapping"]),
    "not a mapping": ("- a\n- b\n", ["config: missing or not a mapping"]),
    "spec is a long string": (stack_text("x" * 10_000), ["expected a mapping", "(10000 characters)"]),
    "spec is a list": (stack_text([1, 2]), ["expected a mapping", "a list of 2 item(s)"]),
    "provider kind a long list": (stack_text(changed(provider={"kind": [["x" * 500]]})), ["tierkit:tier.provider: unknown kind", "characters)"]),
    # --- YAML tricks
    "alias bomb 700 bytes": (bomb(9, 9), ["expands to more than 20,000 values through aliases"]),
    "alias bomb 3 KB": (bomb(30, 12), ["expands to more than 20,000 values"]),
    "alias cycle": ("config:\n  tierkit:tier: &a {tier: single-gpu, gpu: *a}\n", ["refers to the mapping or list that contains it"]),
    "nesting 20,000 deep": ("config:\n  tierkit:tier: " + "[" * 20_000 + "]" * 20_000 + "\n", ["nesting deeper than 32 levels"]),
    "alias chain deeper than the limit": ("config:\n  a0: &a0 [1]\n" + "".join(f"  a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 60)),
                                          ["deeper than 32 levels once aliases are expanded"]),
    "duplicate key": ("config:\n  tierkit:tier:\n    tier: single-gpu\n    tier: multi-gpu\n", ["key 'tier' is given twice", "keep one"]),
    "duplicate nested key": ("config:\n  tierkit:tier:\n    tier: single-gpu\n    gpu:\n      model: l40s\n      count: 1\n      count: 8\n",
                             ["7:7: key 'count' is given twice in this mapping (first on line 6)"]),
    "duplicate config key": ("config:\n  tierkit:tier: {}\n  tierkit:tier: {}\n", ["'tierkit:tier' is given twice"]),
    "5,000-digit integer": (GOOD_TEXT.replace("count: 1", "count: " + "9" * 5000), ["an integer of 5000 characters"]),
    "python tag": (GOOD_TEXT.replace("single-gpu", "!!python/object/apply:os.system [id]"), ["unsupported YAML"]),
    "binary tag": (GOOD_TEXT.replace("llama-3.1-8b", "!!binary aGVsbG8="), ["tierkit:tier.model.key", "valid string"]),
    "set tag": (GOOD_TEXT.replace("single-gpu", "!!set {a, b}"), ["tierkit:tier.tier"]),
    "key that is not text": (stack_text({**BASE, 7: "x"}), ["a key that is not text"]),
    "long unknown key": (stack_text({**BASE, "k\n" * 5000: 1}), ["unknown key", "(10000 characters)"]),
    # --- types and numbers at the edges
    "count true": (stack_text(changed(gpu__count=True)), ["tierkit:tier.gpu.count", "valid integer", "got True"]),
    "count float": (stack_text(changed(gpu__count=1.0)), ["tierkit:tier.gpu.count", "valid integer"]),
    "count string": (stack_text(changed(gpu__count="1")), ["tierkit:tier.gpu.count", "valid integer"]),
    "count zero": (stack_text(changed(gpu__count=0)), ["greater than or equal to 1"]),
    "count nine": (stack_text(changed(gpu__count=9)), ["less than or equal to 8"]),
    "port true": (stack_text(changed(serving={"port": True})), [f"{SERVING}.port", "valid integer"]),
    "port float": (stack_text(changed(serving={"port": 8000.5})), [f"{SERVING}.port", "valid integer"]),
    "port 0": (stack_text(changed(serving={"port": 0})), [f"{SERVING}.port", "greater than or equal to 1"]),
    "port 65536": (stack_text(changed(serving={"port": 65536})), [f"{SERVING}.port", "less than or equal to 65535"]),
    "port 22": (stack_text(changed(serving={"port": 22})), [f"{SERVING}.port: 22", "SSH"]),
    "port 80": (stack_text(changed(serving={"port": 80})), [f"{SERVING}.port: vLLM would listen on 80", "unprivileged"]),
    "failover port on the stats port": (stack_text({**LAB_FO, "serving": {"port": 8404}}), ["8404 is the serving port and also HAProxy's statistics page"]),
    "failover backend on the stats port": (stack_text({**LAB_FO, "serving": {"port": 8403}}), ["8404 is vLLM's port behind HAProxy"]),
    "failover port 1022": (stack_text({**LAB_FO, "serving": {"port": 1022}}), ["vLLM would listen on 1023", "unprivileged"]),
    "utilization nan": (stack_text(changed(serving={"gpu_memory_utilization": float("nan")})), ["gpu_memory_utilization", "finite number"]),
    "utilization inf": (stack_text(changed(serving={"gpu_memory_utilization": float("inf")})), ["gpu_memory_utilization", "finite"]),
    "utilization zero": (stack_text(changed(serving={"gpu_memory_utilization": 0})), ["gpu_memory_utilization", "greater than 0"]),
    "utilization 1.5": (stack_text(changed(serving={"gpu_memory_utilization": 1.5})), ["less than or equal to 1"]),
    "min tok/s nan": (stack_text(changed(smoke={"min_output_tok_s": float("nan")})), ["min_output_tok_s: nan is not a positive number or 'derive'"]),
    "min tok/s inf": (stack_text(changed(smoke={"min_output_tok_s": float("inf")})), ["min_output_tok_s: inf is not a positive number"]),
    "min tok/s negative": (stack_text(changed(smoke={"min_output_tok_s": -1})), ["min_output_tok_s: -1 is not a positive number"]),
    "min tok/s true": (stack_text(changed(smoke={"min_output_tok_s": True})), ["min_output_tok_s: True is not a positive number"]),
    "min tok/s word": (stack_text(changed(smoke={"min_output_tok_s": "fast"})), ["min_output_tok_s: 'fast'"]),
    "p99 ttft inf": (stack_text(changed(smoke={"max_p99_ttft_ms": float("inf")})), ["max_p99_ttft_ms", "finite"]),
    "max_num_seqs huge": (stack_text(changed(serving={"max_num_seqs": 10**12})), ["max_num_seqs", "less than or equal to 65536"]),
    "params_b 1e400": (stack_text(changed(model={"params_b": float("inf"), "layers": 2, "attention_heads": 4, "head_dim": 32, "path": "/m"})), ["params_b", "finite"]),
    "params_b huge": (stack_text(changed(model={"params_b": 1e300, "layers": 2, "attention_heads": 4, "head_dim": 32, "path": "/m"})), ["params_b", "less than or equal to 100000"]),
    "layers negative": (stack_text(changed(model={"params_b": 1, "layers": -2, "attention_heads": 4, "head_dim": 32, "path": "/m"})), ["model.layers", "greater than 0"]),
    "max_context negative": (stack_text(changed(model__max_context=-1)), ["max_context", "greater than 0"]),
    "users zero": (stack_text(changed(users=0)), ["tierkit:tier.users", "greater than or equal to 1"]),
    "servers huge": (stack_text(changed(servers=10**9)), ["tierkit:tier.servers", "less than or equal to 64"]),
    "max_failed negative": (stack_text(changed(smoke={"max_failed": -1})), ["max_failed", "greater than or equal to 0"]),
    "requests huge": (stack_text(changed(smoke={"requests": 10**15})), ["smoke.requests", "less than or equal to"]),
    "router id 256": (stack_text({**LAB_FO, "failover": {"virtual_ip": "10.77.40.100", "router_id": 256}}), ["router_id", "less than or equal to 255"]),
    "advert_int zero": (stack_text({**LAB_FO, "failover": {"virtual_ip": "10.77.40.100", "advert_int": 0}}), ["advert_int"]),
    "pp beyond layers": (stack_text(changed(tier="multi-gpu", gpu={"model": "h100-sxm", "count": 4}, model={"key": "tiny-llama"},
                                            serving={"tensor_parallel": 1, "pipeline_parallel": 4})),
                         ["pipeline_parallel: 4 stages for tiny-llama's 2 layers", "use at most 2"]),
    "awq of an unquantized checkpoint": (stack_text(changed(model={"key": "llama-3.3-70b", "quantization": "awq"})),
                                         ["quantization: awq needs a awq checkpoint", "meta-llama/Llama-3.3-70B-Instruct", "set model.hf_id"]),
    # --- bare-metal hosts: what reaches the inventory, ssh, haproxy.cfg and keepalived.conf
    "address option injection": (bm(host(address="-oProxyCommand=touch /tmp/pwned")), ["hosts[0].address", "not an IP address or DNS name"]),
    "address 999.1.1.1": (bm(host(address="999.1.1.1")), ["hosts[0].address: '999.1.1.1' is not a valid IP address"]),
    "address with newline": (bm(host(address="192.0.2.10\n    server evil 203.0.113.9:80")), ["hosts[0].address", "\\n"]),
    "address with space": (bm(host(address="gpu a.example.com")), ["hosts[0].address"]),
    "address empty label": (bm(host(address="gpu..example.com")), ["hosts[0].address"]),
    "address numeric tld": (bm(host(address="gpu.10")), ["not a valid IP address"]),
    "address number": (bm(host(address=3232235786)), ["hosts[0].address", "valid string"]),
    "user injection": (bm(host(user="root; rm -rf /")), ["hosts[0].user: 'root; rm -rf /' is not a POSIX user name"]),
    "user option": (bm(host(user="-oProxyCommand=x")), ["is not a POSIX user name"]),
    "user too long": (bm(host(user="a" * 33)), ["is not a POSIX user name"]),
    "host name newline": (bm(host(name="gpu\nb")), ["hosts[0].name"]),
    "host name dash": (bm(host(name="-gpu")), ["hosts[0].name"]),
    "host name dot": (bm(host(name="gpu.a")), ["hosts[0].name"]),
    "host ssh port 0": (bm(host(port=0)), ["hosts[0].port"]),
    "host ssh port on the serving port": (bm(host(port=8000)), ["hosts[0].port: SSH on 8000 clashes with the serving port"]),
    "duplicate host names": (bm(host(), host(name="GPU-A", address="192.0.2.11"), base=BM_FO), ["hosts[1].name: 'GPU-A' is also hosts[0]'s"]),
    "duplicate host addresses": (bm(host(), host(name="gpu-b"), base=BM_FO), ["hosts[1].address: '192.0.2.10' is also hosts[0]'s"]),
    "duplicate dns names": (bm(host(address="GPU.example.com"), host(name="gpu-b", address="gpu.example.com."), base=BM_FO), ["hosts[1].address"]),
    "key_path missing": (bm(host(key_path="/nonexistent/id_ed25519")), ["hosts[0].key_path: /nonexistent/id_ed25519 does not exist"]),
    "key_path a directory": (bm(host(key_path="/")), ["hosts[0].key_path: / is not a regular file"]),
    "key_path newline": (bm(host(key_path="/k\n/x")), ["hosts[0].key_path"]),
    "too many hosts": (bm(*[host(name=f"h{i}") for i in range(65)]), ["provider.hosts", "at most 64"]),
    # --- what reaches the vLLM unit (ExecStart words) and the model download
    "served name newline": (stack_text(changed(serving={"served_model_name": "m\n[Service]\nExecStartPre=+/bin/sh -c id"})),
                            ["served_model_name", "is not a usable model name"]),
    "served name command substitution": (stack_text(changed(serving={"served_model_name": "$(reboot)"})), ["served_model_name"]),
    "served name systemd specifier": (stack_text(changed(serving={"served_model_name": "%n"})), ["served_model_name"]),
    "served name quote": (stack_text(changed(serving={"served_model_name": 'a" --port "9'})), ["served_model_name"]),
    "served name dash": (stack_text(changed(serving={"served_model_name": "--port"})), ["served_model_name"]),
    "served name 10 KB": (stack_text(changed(serving={"served_model_name": "m" * 10_000})), ["served_model_name", "(10000 characters)"]),
    "model path relative": (stack_text(changed(model={"key": "llama-3.1-8b", "path": "models/x"})), ["model.path", "absolute directory"]),
    "model path dot-dot": (stack_text(changed(model={"key": "llama-3.1-8b", "path": "/models/../etc"})), ["model.path"]),
    "model path newline": (stack_text(changed(model={"key": "llama-3.1-8b", "path": "/m\nExecStartPre=/bin/id"})), ["model.path"]),
    "hf id without owner": (stack_text(changed(model={"key": "llama-3.1-8b", "hf_id": "llama"})), ["model.hf_id", "owner/name"]),
    "hf id injection": (stack_text(changed(model={"key": "llama-3.1-8b", "hf_id": "a/b c;id"})), ["model.hf_id"]),
    "hf id traversal": (stack_text(changed(model={"key": "llama-3.1-8b", "hf_id": "../../etc"})), ["model.hf_id"]),
    "extra arg api key": (stack_text(changed(serving={"extra_args": ["--api-key=hunter2"]})),
                          ["extra_args[0]", "pulumi config set --secret tierkit:apiKey"]),
    "extra arg api_key spelling": (stack_text(changed(serving={"extra_args": ["--api_key", "x"]})), ["pulumi config set --secret"]),
    "extra arg api key prefix": (stack_text(changed(serving={"extra_args": ["--api-k", "x"]})), ["pulumi config set --secret"]),
    "extra arg port": (stack_text(changed(serving={"extra_args": ["--port", "9000"]})), ["extra_args[0]: '--port' sets --port"]),
    "extra arg host": (stack_text(changed(serving={"extra_args": ["--host=0.0.0.0"]})), ["sets --host"]),
    "extra arg model": (stack_text(changed(serving={"extra_args": ["--model", "/other"]})), ["sets --model"]),
    "extra arg served name": (stack_text(changed(serving={"extra_args": ["--served-model-name=x"]})), ["sets --served-model-name"]),
    "extra arg tp short": (stack_text(changed(serving={"extra_args": ["-tp", "8"]})), ["sets a flag tierkit sets from the spec (-tp, -pp, -dp"]),
    "extra arg tp long": (stack_text(changed(serving={"extra_args": ["--tensor-parallel-size=8"]})), ["sets --tensor-parallel-size"]),
    "extra arg config file": (stack_text(changed(serving={"extra_args": ["--config", "/tmp/x.yaml"]})), ["sets --config"]),
    "extra arg uds": (stack_text(changed(serving={"extra_args": ["--uds=/tmp/s"]})), ["sets --uds"]),
    "extra arg dotted": (stack_text(changed(serving={"extra_args": ["--port.x=1"]})), ["sets --port"]),
    "extra arg newline": (stack_text(changed(serving={"extra_args": ["--enable-prefix-caching\nExecStartPre=+/bin/sh"]})), ["control character"]),
    "extra args not a list": (stack_text(changed(serving={"extra_args": "--port 9000"})), ["extra_args", "valid list"]),
    "extra arg number": (stack_text(changed(serving={"extra_args": [8]})), ["extra_args[0]", "valid string"]),
    # --- the lab's own checks (what `tierkit lab up` refuses)
    "lab name injection": (stack_text(changed(provider={"kind": "lab", "name": "a;reboot"})), ["provider.name"]),
    "lab subnet /30": (stack_text({**LAB_FO, "provider": {"kind": "lab", "name": "ha", "subnet": "10.77.40.0/30"}}), ["provider.subnet: 10.77.40.0/30 is not a private /24"]),
    "lab subnet public": (stack_text(changed(provider={"kind": "lab", "name": "t", "subnet": "8.8.8.0/24"})), ["is not a private /24"]),
    "lab subnet host bits": (stack_text(changed(provider={"kind": "lab", "name": "t", "subnet": "10.77.40.5/24"})), ["provider.subnet", "not a valid IPv4 network"]),
    "lab topology file missing": (stack_text(changed(provider={"kind": "lab", "name": "t", "topology": "/nonexistent/topo.txt"})),
                                  ["provider.topology: '/nonexistent/topo.txt' is neither one of nvlink, pcie, pairs nor a file"]),
    "lab topology file garbage": (stack_text(changed(provider={"kind": "lab", "name": "t", "topology": "/etc/hostname"})), ["provider.topology", "cannot read the file"]),
    "lab topology a device": (stack_text(changed(provider={"kind": "lab", "name": "t", "topology": "/dev/zero"})), ["provider.topology"]),
    "lab fault bogus": (stack_text(changed(provider={"kind": "lab", "name": "t", "faults": ["melt-gpu=0"]})), ["provider.faults: 'melt-gpu=0' is not a GPU fault"]),
    "lab fault out of range": (stack_text(changed(provider={"kind": "lab", "name": "t", "faults": ["missing-gpu=5"]})), ["provider.faults", "the host has GPUs 0-0"]),
    "lab fault unknown host": (stack_text(changed(provider={"kind": "lab", "name": "t", "faults": ["x-9/missing-gpu=0"]})), ["provider.faults: no host x-9"]),
    # --- the failover VIP
    "vip network address": (stack_text({**LAB_FO, "failover": {"virtual_ip": "10.77.40.0"}}), ["virtual_ip: 10.77.40.0 is the subnet's network address"]),
    "vip broadcast": (stack_text({**LAB_FO, "failover": {"virtual_ip": "10.77.40.255"}}), ["is the subnet's broadcast address"]),
    "vip gateway": (stack_text({**LAB_FO, "failover": {"virtual_ip": "10.77.40.1"}}), ["is the subnet's gateway"]),
    "vip a host": (stack_text({**LAB_FO, "failover": {"virtual_ip": "10.77.40.12"}}), ["is a host's own address"]),
    "vip outside the lab's vip range": (stack_text({**LAB_FO, "failover": {"virtual_ip": "10.77.40.50"}}), ["outside .100-.199"]),
    "vip loopback": (stack_text({**LAB_FO, "failover": {"virtual_ip": "127.0.0.1"}}), ["not a unicast address a host can take"]),
    "vip newline": (stack_text({**LAB_FO, "failover": {"virtual_ip": "10.77.40.100\n"}}), ["failover.virtual_ip"]),
    "vip integer": (stack_text({**LAB_FO, "failover": {"virtual_ip": 3232235777}}), ["failover.virtual_ip: expected text"]),
    "vip baremetal broadcast": (stack_text({**BM_FO, "failover": {"virtual_ip": "192.0.2.255"}}), ["192.0.2.255 is the subnet's broadcast address"]),
    "vip baremetal host": (stack_text({**BM_FO, "failover": {"virtual_ip": "192.0.2.11"}}), ["is a host's own address"]),
    # --- aws
    "aws ssh_cidr everyone": (stack_text(changed(AWS, provider__ssh_cidr="everyone")), ["ssh_cidr: 'everyone' is not an IPv4 CIDR block"]),
    "aws ssh_cidr whole internet": (stack_text(changed(AWS, provider__ssh_cidr="0.0.0.0/0")), ["ssh_cidr: 0.0.0.0/0 opens SSH"]),
    "aws region injection": (stack_text(changed(AWS, provider__region="us-east-1; id")), ["provider.region", "e.g. us-east-1"]),
    "aws ami": (stack_text(changed(AWS, provider__ami="ami-xyz")), ["provider.ami"]),
    "aws instance type newline": (stack_text(changed(AWS, provider__instance_type="p5.48xlarge\n")), ["provider.instance_type"]),
    # --- the multi-server tier's inputs
    "multi-server nine servers": (stack_text(changed(tier="multi-server", servers=9)), ["tierkit:tier.servers: multi-server means 2-8 servers, got 9"]),
    "network min_gbps nan": (stack_text(changed(tier="multi-server", network={"min_gbps": float("nan")})), ["network.min_gbps", "finite"]),
    "network min_gbps inf": (stack_text(changed(tier="multi-server", network={"min_gbps": float("inf")})), ["network.min_gbps"]),
    "network iperf_seconds true": (stack_text(changed(tier="multi-server", network={"iperf_seconds": True})), ["network.iperf_seconds", "valid integer"]),
    "network master_port text": (stack_text(changed(tier="multi-server", network={"master_port": "29501"})), ["network.master_port", "valid integer"]),
    "network master_port 22": (stack_text(changed(tier="multi-server", network={"master_port": 22})), ["network.master_port", "greater than or equal to 1024"]),
    "network master_port is the serving port": (stack_text(changed(tier="multi-server", network={"master_port": 8000})),
                                                ["network.master_port: 8000 is serving.port too"]),
    "network key misspelt": (stack_text(changed(tier="multi-server", network={"min_gbs": 5})), ["network.min_gbs: unknown key; did you mean 'min_gbps'"]),
    "extra_args --nnodes": (stack_text(changed(serving={"extra_args": ["--nnodes=3"]})), ["sets --nnodes, which tierkit sets"]),
    "extra_args --headless": (stack_text(changed(serving={"extra_args": ["--headless"]})), ["sets --headless, which tierkit sets"]),
    "extra_args --master-addr abbreviated": (stack_text(changed(serving={"extra_args": ["--master-a", "10.0.0.1"]})), ["sets --master-addr"]),
    "allowed_sources everyone": (stack_text(changed(serving={"allowed_sources": ["everyone"]})), ["serving.allowed_sources[0]"]),
    "allowed_sources integer": (stack_text(changed(serving={"allowed_sources": [167772160]})), ["serving.allowed_sources[0]: expected text"]),
    "allowed_sources ipv6": (stack_text(changed(serving={"allowed_sources": ["::/0"]})), ["serving.allowed_sources[0]"]),
    "allowed_sources newline": (stack_text(changed(serving={"allowed_sources": ["10.0.0.0/8\n"]})), ["serving.allowed_sources[0]"]),
    # --- secrets
    "api key in the spec": (stack_text({**BASE, "api_key": "hunter2"}), ["tierkit:tier.api_key: a secret does not belong in the spec",
                                                                         "pulumi config set --secret tierkit:apiKey"]),
    "hf token in serving": (stack_text(changed(serving={"hf_token": "hf_x"})), ["serving.hf_token", "pulumi config set --secret tierkit:hfToken"]),
    "password in a host": (bm(host(password="x")), ["hosts[0].password", "pulumi config set --secret"]),
    "plaintext tierkit:apiKey": (stack_text(BASE, **{"tierkit:apiKey": "hunter2"}), ["config.tierkit:apiKey: a secret in plain text",
                                                                                       "pulumi config set --secret tierkit:apiKey"]),
    "plaintext tierkit:hfToken": (stack_text(BASE, **{"tierkit:hfToken": "hf_x"}), ["pulumi config set --secret tierkit:hfToken"]),
}

# Specs that must still pass: the hostile rules must not refuse what is fine.
VALID: dict[str, str | bytes] = {
    "base": GOOD_TEXT,
    "utf-8 with a byte-order mark": b"\xef\xbb\xbf" + GOOD_TEXT.encode(),
    "non-ascii comment": "# modèle: ünïcode ✓\n" + GOOD_TEXT,
    "anchors and merge keys": "x: &gpu {model: rtx-pro-6000, count: 1}\nconfig:\n  tierkit:tier:\n    tier: single-gpu\n"
                              "    gpu: {<<: *gpu}\n    model: {key: llama-3.1-8b}\n",
    "encrypted secret beside the spec": stack_text(BASE, **{"tierkit:apiKey": {"secure": "AAABAMv0x"}}),
    "extra args vLLM takes": stack_text(changed(serving={"extra_args": ["--enable-prefix-caching", "--max-num-batched-tokens=8192",
                                                                        "--chat-template", "/opt/t.jinja"]})),
    "served name with org and tag": stack_text(changed(serving={"served_model_name": "acme/llama-3.1-8b:v2"})),
    "hf id and path": stack_text(changed(model={"key": "llama-3.1-8b", "hf_id": "meta-llama/Llama-3.1-8B-Instruct"})),
    "model path": stack_text(changed(model={"key": "llama-3.1-8b", "path": "/srv/models/llama-3.1-8b"})),
    "numbers as floats where floats belong": stack_text(changed(serving={"gpu_memory_utilization": 1}, smoke={"min_output_tok_s": 10})),
    "port 1024": stack_text(changed(serving={"port": 1024})),
    "lab failover": stack_text(LAB_FO),
    "lab failover vip at the top of its range": stack_text({**LAB_FO, "failover": {"virtual_ip": "10.77.40.199"}}),
    "baremetal failover": stack_text(BM_FO),
    "baremetal dns names and ipv6": bm(host(address="gpu-a.example.com"), host(name="gpu-b", address="2001:db8::11"), base=BM_FO),
    "baremetal ssh on 2222": bm(host(port=2222)),
    "lab multi-server": stack_text(changed(tier="multi-server", model={"key": "tiny-llama"}, network={"min_gbps": 1.5, "master_port": 29500})),
    "allowed sources": stack_text(changed(serving={"allowed_sources": ["203.0.113.0/24", "198.51.100.7"]})),
    "lab topology file": stack_text(changed(tier="multi-gpu", gpu={"model": "h100-sxm", "count": 8}, model={"key": "tiny-llama"},
                                            serving={"tensor_parallel": 4, "pipeline_parallel": 2},
                                            provider={"kind": "lab", "name": "t", "topology": "TOPOFILE"})),
}


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o600)
    return key


def write_case(tmp_path: Path, content: str | bytes, key: Path) -> Path:
    topo = Path(__file__).resolve().parents[1] / "fixtures" / "nvidia-smi" / "hgx-h100-8x-nv18-topo.txt"
    f = tmp_path / "Pulumi.case.yaml"
    if isinstance(content, str):
        content = content.replace("KEYFILE", str(key)).replace("TOPOFILE", str(topo)).encode()
    f.write_bytes(content)
    return f


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", CASES)
def test_hostile_spec_is_refused(name: str, tmp_path: Path, key_file: Path) -> None:
    content, needles = CASES[name]
    assert_refused(run_cli("validate", "--file", str(write_case(tmp_path, content, key_file))), *needles)


@pytest.mark.parametrize("name", VALID)
def test_valid_spec_passes(name: str, tmp_path: Path, key_file: Path) -> None:
    outcome = run_cli("validate", "--file", str(write_case(tmp_path, VALID[name], key_file)))
    assert outcome.rc == 0, outcome.stderr
    assert outcome.stdout.startswith("ok: ")


@pytest.mark.parametrize("path, needle", [
    ("/dev/zero", "not a regular file"),
    ("/", "is a directory"),
    ("/nonexistent/Pulumi.x.yaml", "no such stack file"),
])
def test_files_that_are_not_stack_files(path: str, needle: str) -> None:
    assert_refused(run_cli("validate", "--file", path), needle)


@pytest.mark.parametrize("name", ["../../etc/passwd", "a\nb", "-x", ""])
def test_stack_names_are_names(name: str) -> None:
    assert_refused(run_cli("validate", "--stack", name), "--stack")


def test_an_unreadable_key_is_refused(tmp_path: Path, key_file: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    key_file.chmod(0)
    text = bm(host(key_path=str(key_file)))
    assert_refused(run_cli("validate", "--file", str(write_case(tmp_path, text, key_file))), "is not readable")


def test_every_problem_of_a_bad_host_is_reported(tmp_path: Path, key_file: Path) -> None:
    text = bm(host(address="-oProxyCommand=x", user="root;id", name="-h"))
    outcome = run_cli("validate", "--file", str(write_case(tmp_path, text, key_file)))
    assert_refused(outcome, "hosts[0].address", "hosts[0].user", "hosts[0].name")
    assert len(outcome.errors) == 3
