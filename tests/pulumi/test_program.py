"""The Pulumi program under the SDK's mock runtime: three stacks x three providers.

A fake backend answers each registration the way the real providers would (a lab's JSON, EC2
addresses, a smoke report) without running anything; `tierkit.rehearsal.runtime.run_program`, the
rehearsal's own harness, installs it in Pulumi's mock runtime and records the graph (parents,
dependencies) and secret-ness.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tierkit import program
from tierkit.providers.aws import INSTANCE_TYPES, root_volume_gib
from tierkit.rehearsal.runner import COMMAND
from tierkit.rehearsal.runtime import Backend, ProgramRun, Registration, has_secret, is_sealed, reveal, run_program
from tierkit.spec import plan_for_spec
from tierkit.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("single-gpu", "multi-gpu", "failover", "multi-server")
PROVIDERS = ("lab", "baremetal", "aws")
API_KEY = "sk-test-0123456789abcdef"
HF_TOKEN = "hf_test_abcdef0123456789"
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
CALIBRATED_FLOOR = 123.4
CALIBRATED_STREAM = 61.7


def stack_spec(stack: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    return copy.deepcopy(doc["config"]["tierkit:tier"])


def variant(stack: str, provider: str, keys: Path) -> dict[str, Any]:
    """The shipped stack's spec on another provider (GPUs an EC2 type carries, for aws)."""
    spec = stack_spec(stack)
    servers = 2 if stack in ("failover", "multi-server") else 1
    if provider == "baremetal":
        spec["provider"] = {"kind": "baremetal", "hosts": [
            {"name": f"gpu{i + 1}", "address": f"192.0.2.{10 + i}", "user": "ubuntu", "key_path": str(keys / "id")}
            for i in range(servers)
        ]}
        if stack == "failover":
            spec["failover"]["virtual_ip"] = "192.0.2.100"
        # The lab's tiny model exists only in the lab: real servers download a real one.
        spec["model"] = {"key": "llama-3.1-8b", "quantization": "bf16", "max_context": 8192}
    elif provider == "aws":
        spec["provider"] = {"kind": "aws", "region": "us-east-1", "ssh_cidr": "203.0.113.0/24",
                            "public_key_path": str(keys / "id.pub"), "private_key_path": str(keys / "id")}
        spec.pop("failover", None)  # on aws the load balancer is the front door
        if stack == "multi-gpu":
            spec["gpu"] = {"model": "h100-sxm", "count": 8, "interconnect": "nvlink"}
            spec["model"] = {"key": "llama-3.3-70b", "quantization": "fp8", "max_context": 8192}
            spec["serving"]["tensor_parallel"] = 8
        else:
            spec["gpu"] = {"model": "l40s", "count": 1}
            spec["model"] = {"key": "llama-3.1-8b", "quantization": "bf16", "max_context": 8192}
    parse_spec(spec)  # every variant is a valid spec
    return spec


class FakeCloud(Backend):
    """Answers registrations and invokes as the providers and tierkit's verbs would."""

    def create(self, reg: Registration) -> tuple[str, dict[str, Any]]:
        if not reg.custom:
            return "", {}
        state = dict(reg.inputs)
        rid = f"{reg.name}-id"
        if reg.type == COMMAND:
            state["stdout"] = self.stdout(reg)
            state["stderr"] = ""
        elif reg.type == "aws:ec2/instance:Instance":
            n = int(reg.name.removeprefix("server"))
            state |= {"public_ip": f"198.51.100.{n}", "id": f"i-{n}"}
        elif reg.type == "aws:lb/loadBalancer:LoadBalancer":
            state |= {"dns_name": "tierkit-lb.elb.us-east-1.amazonaws.com", "arn": "arn:lb"}
        elif reg.type == "aws:lb/targetGroup:TargetGroup":
            state["arn"] = "arn:tg"
        elif reg.type == "aws:ec2/securityGroup:SecurityGroup":
            state["id"] = f"sg-{reg.name}"
            rid = state["id"]
        elif reg.type == "aws:ec2/keyPair:KeyPair":
            state["key_name"] = "tierkit-key"
        return rid, state

    @staticmethod
    def stdout(reg: Registration) -> str:
        if reg.name == "lab":
            args = reg.plain("create").split()
            name, count = args[args.index("--name") + 1], int(args[args.index("--hosts") + 1])
            hosts = [{"name": f"{name}-{i + 1}", "address": f"10.77.40.{11 + i}", "port": 22, "user": "root",
                      "key_path": "/var/lib/tierkit/lab/id", "known_hosts": "/var/lib/tierkit/lab/known_hosts",
                      "netns": f"tk-{name}"} for i in range(count)]
            return json.dumps({"lab": name, "netns": f"tk-{name}", "subnet": "10.77.40.0/24", "hosts": hosts})
        if reg.name == "wait-ssh":
            args = reg.plain("create").split()
            pinned = args[args.index("--known-hosts") + 1]
            return json.dumps([{**h, "known_hosts": pinned} for h in json.loads(reg.plain("stdin"))])
        if reg.name == "calibrate":
            return json.dumps({"min_output_tok_s": CALIBRATED_FLOOR, "single_stream_tok_s": CALIBRATED_STREAM,
                               "statement": "figures come from a CPU rehearsal"})
        if reg.name == "smoke":
            return json.dumps({"passed": True, "completed": 48, "failed": 0, "output_throughput": 900.0,
                               "gates": [{"name": "output_throughput", "passed": True, "measured": 900.0,
                                          "op": ">=", "required": 1.0, "unit": "tok/s"}], "gate_source": "command line"})
        return "configured"

    def invoke(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        if token == "aws:ec2/getVpc:getVpc":
            return {"id": "vpc-default"}
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": ZONES, "id": "us-east-1"}
        if token == "aws:ec2/getSubnet:getSubnet":
            return {"id": f"subnet-{args['availabilityZone']}"}
        if token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-dlami-latest"}
        raise AssertionError(f"unexpected invoke {token}")


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    d.mkdir()
    (d / "id").write_text("PRIVATE\n")
    (d / "id.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockKeyForTests tierkit\n")
    return d


def run(spec: dict[str, Any] | Any, stack: str = "test", secrets: bool = True) -> ProgramRun:
    config = {"tierkit:tier": json.dumps(spec)}
    secret_keys = []
    if secrets:
        config |= {"tierkit:apiKey": API_KEY, "tierkit:hfToken": HF_TOKEN}
        secret_keys = ["tierkit:apiKey", "tierkit:hfToken"]
    result = run_program(program.main, FakeCloud(), project="tierkit", stack=stack, config=config,
                                   secret_keys=secret_keys)
    if result.error is not None and not isinstance(result.error, program.ProgramError):
        raise result.error
    return result


def parent_name(result: ProgramRun, reg: Registration) -> str:
    by_urn = {r.urn: r.name for r in result.registrations}
    return by_urn.get(reg.parent or "", "<stack>")


CASES = [(s, p) for s in STACKS for p in PROVIDERS]


@pytest.mark.parametrize(("stack", "provider"), CASES)
def test_graph_parents_and_order(stack: str, provider: str, keys: Path) -> None:
    result = run(variant(stack, provider, keys))
    assert result.error is None
    chain = {"servers": "<stack>", "ready": "servers", "configure": "ready", "smoke": "configure"}
    for name, parent in chain.items():
        assert parent_name(result, result.named(name, component=True)) == parent
    assert parent_name(result, result.named("wait-ssh")) == "ready"
    assert parent_name(result, result.named("configure")) == "configure"
    commands = {r.name: r for r in result.by_type(COMMAND)}
    assert parent_name(result, commands["smoke"]) == "smoke"
    expected = {"wait-ssh", "configure", "smoke"} | ({"lab", "calibrate"} if provider == "lab" else set())
    assert set(commands) == expected
    deps = {name: set(r.dependencies) for name, r in commands.items()}
    assert commands["wait-ssh"].urn in deps["configure"]
    assert commands["configure"].urn in (deps["calibrate"] if provider == "lab" else deps["smoke"])
    if provider == "lab":
        assert commands["calibrate"].urn in deps["smoke"]
        assert commands["lab"].urn in deps["wait-ssh"]
        assert parent_name(result, commands["lab"]) == "servers"
    if provider == "aws":
        instances = result.by_type("aws:ec2/instance:Instance")
        assert len(instances) == (2 if stack in ("failover", "multi-server") else 1)
        assert {i.urn for i in instances} <= deps["wait-ssh"]
        assert all(parent_name(result, r) == "servers" for r in result.registrations if r.type.startswith("aws:"))
    if provider == "baremetal":
        assert not [r for r in result.registrations if r.custom and r.type != COMMAND]


@pytest.mark.parametrize(("stack", "provider"), CASES)
def test_exports(stack: str, provider: str, keys: Path) -> None:
    spec_dict = variant(stack, provider, keys)
    spec = parse_spec(spec_dict)
    result = run(spec_dict)
    exports = {k: e.value for k, e in result.exports.items()}
    assert set(exports) == {"endpoint", "hosts", "plan", "smoke", "notes"}
    port = spec.serving.port
    if provider == "aws":
        assert exports["endpoint"] == f"http://tierkit-lb.elb.us-east-1.amazonaws.com:{port}"
    elif stack == "failover":
        assert exports["endpoint"] == f"http://{spec.failover.virtual_ip}:{port}"
    else:
        assert exports["endpoint"] == f"http://{exports['hosts'][0]['address']}:{port}"
    assert len(exports["hosts"]) == spec.server_count
    assert all(h["known_hosts"].endswith(".tierkit/test/known_hosts") for h in exports["hosts"])
    assert exports["plan"] == plan_for_spec(spec).to_json()
    assert exports["smoke"]["passed"] is True
    if provider == "lab":
        assert exports["smoke"]["gate_source"] == "figures come from a CPU rehearsal"
        assert any("CPU calibration" in n for n in exports["notes"])
    if stack == "multi-gpu" and provider == "lab":
        assert any("TP=4" in n and "ran TP=" in n and "4x h100-sxm" in n for n in exports["notes"])


@pytest.mark.parametrize("stack", STACKS)
def test_lab_commands(stack: str, keys: Path) -> None:
    spec = parse_spec(stack_spec(stack))
    result = run(stack_spec(stack))
    lab = result.named("lab")
    create = lab.plain("create")
    p = spec.provider
    assert create.endswith(
        f"lab up --name {p.name} --hosts {spec.server_count} --gpu {spec.gpu.model} --gpus-per-host {spec.gpu.count} "
        f"--topology {p.topology}" + (f" --subnet {p.subnet}" if p.subnet else "") + " --runtime --json"
    )
    assert lab.plain("delete").endswith(f"lab down {p.name}")
    netns = f"ip netns exec tk-{p.name} "
    calibrate = result.named("calibrate").plain("create")
    smoke = result.named("smoke").plain("create")
    assert calibrate.startswith(netns) and "calibrate --stack test --endpoint" in calibrate and "--json" in calibrate
    assert smoke.startswith(netns)
    # The spec reaches smoke as --stack (load and gates from it); only the calibrated floor is added.
    assert "smoke --stack test --endpoint" in smoke
    assert f"--min-output-tok-s {CALIBRATED_FLOOR}" in smoke
    assert f"--expect-stream-tok-s {CALIBRATED_STREAM} --expect-source" in smoke  # the calibration is the prediction
    assert "--concurrency" not in smoke and "--requests" not in smoke
    assert "--json" in smoke and smoke.endswith("/.tierkit/test/smoke.json")
    assert result.named("smoke").plain("delete").startswith("rm -f ")
    wait = result.named("wait-ssh")
    assert "wait-ssh --hosts - --known-hosts" in wait.plain("create")
    assert json.loads(wait.plain("stdin"))[0]["netns"] == f"tk-{p.name}"


def test_baremetal_gate_is_the_plan(keys: Path) -> None:
    spec_dict = variant("single-gpu", "baremetal", keys)
    result = run(spec_dict)
    smoke = result.named("smoke").plain("create")
    assert "smoke --stack test --endpoint" in smoke and "--min-output-tok-s" not in smoke  # the plan's, from the spec
    assert "--expect-stream-tok-s" not in smoke  # the plan's prediction, from the spec
    assert "calibrate" not in {r.name for r in result.registrations}
    assert not smoke.startswith("ip netns")
    hosts = json.loads(result.named("wait-ssh").plain("stdin"))
    assert [h["address"] for h in hosts] == ["192.0.2.10"]
    assert hosts[0]["known_hosts"] is None  # pinned by Ready on first contact


@pytest.mark.parametrize("stack", STACKS)
def test_aws_properties(stack: str, keys: Path) -> None:
    spec_dict = variant(stack, "aws", keys)
    spec = parse_spec(spec_dict)
    result = run(spec_dict)
    instances = sorted(result.by_type("aws:ec2/instance:Instance"), key=lambda r: r.name)  # registration order varies
    want_type = INSTANCE_TYPES[(spec.gpu.model, spec.gpu.count)]
    assert {i.inputs["instanceType"] for i in instances} == {want_type}
    assert {i.inputs["ami"] for i in instances} == {"ami-dlami-latest"}
    assert all(i.inputs["rootBlockDevice"]["volumeSize"] == root_volume_gib(spec) for i in instances)
    assert all(i.inputs["associatePublicIpAddress"] for i in instances)
    subnets = [i.inputs["subnetId"] for i in instances]
    assert subnets == [f"subnet-{z}" for z in ZONES[: spec.server_count]], "one server per zone, distinct"
    assert all(i.inputs["region"] == "us-east-1" for i in instances)
    key = result.by_type("aws:ec2/keyPair:KeyPair")[0]
    assert key.inputs["publicKey"].startswith("ssh-ed25519 AAAA")
    assert all(i.inputs["keyName"] == "tierkit-key" for i in instances)
    lb = result.by_type("aws:lb/loadBalancer:LoadBalancer")[0]
    assert lb.inputs["loadBalancerType"] == "network" and lb.inputs["subnets"] == subnets
    tg = result.by_type("aws:lb/targetGroup:TargetGroup")[0]
    assert tg.inputs["healthCheck"]["path"] == "/health"
    assert len(result.by_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")) == spec.replicas


def test_aws_root_volume_grows_with_the_model(keys: Path) -> None:
    small = parse_spec(variant("single-gpu", "aws", keys))
    big = parse_spec(variant("multi-gpu", "aws", keys))
    assert root_volume_gib(small) < root_volume_gib(big)
    assert root_volume_gib(big) >= 100 + 2 * plan_for_spec(big).weights_gib


def test_aws_security_group_rules(keys: Path) -> None:
    result = run(variant("failover", "aws", keys))
    port = 8000
    ingress = {r.name: r.inputs for r in result.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")}
    assert ingress["ssh"] | {} == {**ingress["ssh"], "securityGroupId": "sg-servers", "fromPort": 22, "toPort": 22,
                                   "cidrIpv4": "203.0.113.0/24", "ipProtocol": "tcp"}
    to_vllm = [r for r in ingress.values() if r["securityGroupId"] == "sg-servers" and r.get("fromPort") == port]
    assert {r.get("referencedSecurityGroupId") for r in to_vllm} == {"sg-servers", "sg-lb"}, "vLLM: the peer and the LB only"
    assert not [r for r in to_vllm if "cidrIpv4" in r], "no CIDR reaches vLLM directly"
    server_rules = [r for r in ingress.values() if r["securityGroupId"] == "sg-servers"]
    assert {r["fromPort"] for r in server_rules} == {22, port}, "nothing else is open on the servers"
    assert ingress["lb-in"]["cidrIpv4"] == "203.0.113.0/24" and ingress["lb-in"]["fromPort"] == port
    egress = {r.name: r.inputs for r in result.by_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")}
    assert egress["lb-to-servers"]["referencedSecurityGroupId"] == "sg-servers"


def test_aws_without_a_mapped_instance_type_fails_before_anything(keys: Path) -> None:
    spec = variant("single-gpu", "aws", keys)
    spec["gpu"] = {"model": "rtx-pro-6000", "count": 1}
    result = run(spec)
    assert isinstance(result.error, program.ProgramError)
    assert result.error.problems[0].startswith("tierkit:tier.provider.instance_type: no EC2 instance type")
    assert result.registrations == []
    spec["provider"]["instance_type"] = "g7e.2xlarge"
    assert run(spec).by_type("aws:ec2/instance:Instance")[0].inputs["instanceType"] == "g7e.2xlarge"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_secrets_stay_secret(provider: str, keys: Path) -> None:
    result = run(variant("failover", provider, keys))
    configure = result.named("configure")
    assert is_sealed(configure.inputs["environment"])
    assert configure.plain("environment") == {"TIERKIT_API_KEY": API_KEY, "HF_TOKEN": HF_TOKEN}
    assert configure.plain("logging") == "stderr"
    assert "stdout" in configure.secret_outputs
    smoke_cmd = result.named("smoke")
    assert is_sealed(smoke_cmd.inputs["environment"])
    assert smoke_cmd.plain("environment") == {"OPENAI_API_KEY": API_KEY}
    assert smoke_cmd.plain("logging") == "stderr"
    for reg in result.registrations:
        text = json.dumps(reveal({k: v for k, v in reg.inputs.items() if k != "environment"}))
        assert API_KEY not in text and HF_TOKEN not in text, f"{reg.name}: a secret outside the environment"
    for name, export in result.exports.items():
        assert API_KEY not in json.dumps(export.value) and HF_TOKEN not in json.dumps(export.value), name
    # As the engine would store them: configure's environment and stdout stay secret.
    conf_state = result.states[configure.urn]
    assert is_sealed(conf_state["environment"]) and is_sealed(conf_state["stdout"])
    assert not has_secret(result.states[smoke_cmd.urn]["stdout"]), "the smoke summary is exportable"


def test_no_secrets_configured_means_no_environment(keys: Path) -> None:
    result = run(variant("single-gpu", "baremetal", keys), secrets=False)
    assert result.named("configure").inputs.get("environment") is None
    assert result.named("smoke").inputs.get("environment") is None


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root)
    for d in ("stacks", "playbooks", "roles"):
        shutil.copytree(ROOT / d, root / d, symlinks=True)
    monkeypatch.chdir(root)
    return root


def test_configure_triggers_follow_playbooks_and_roles(project_copy: Path, keys: Path) -> None:
    spec = variant("single-gpu", "baremetal", keys)

    def triggers() -> list[Any]:
        return run(spec).named("configure").plain("triggers")

    first = triggers()
    assert triggers() == first, "nothing changed, nothing re-runs"
    with (project_copy / "playbooks" / "site.yml").open("a") as f:
        f.write("# changed\n")
    second = triggers()
    assert second[1] != first[1] and second[0] == first[0]
    role_defaults = next((project_copy / "roles").glob("*/defaults/main.yml"))
    role_defaults.write_text(role_defaults.read_text() + "# changed\n")
    assert triggers()[1] != second[1]
    spec["serving"]["max_num_seqs"] = 16
    assert triggers()[0] != first[0], "a spec change re-runs configure too"


@pytest.mark.parametrize(
    ("mutate", "line"),
    [
        (lambda s: s["gpu"].update(count=2), "tierkit:tier.gpu.count: single-gpu means exactly 1 GPU per server, got 2"),
        (lambda s: s.update(tier="quad-gpu"), "tierkit:tier.tier: 'quad-gpu' is not allowed"),
        (lambda s: s["model"].update(key="llama-9000"), "tierkit:tier.model.key: unknown model 'llama-9000'"),
    ],
)
def test_bad_spec_registers_nothing(mutate: Any, line: str) -> None:
    spec = stack_spec("single-gpu")
    mutate(spec)
    result = run(spec)
    assert isinstance(result.error, program.ProgramError)
    assert result.error.problems[0].startswith(line)
    assert result.registrations == []


def test_missing_or_malformed_spec_registers_nothing() -> None:
    missing = run_program(program.main, FakeCloud(), project="tierkit", stack="test", config={})
    assert isinstance(missing.error, program.ProgramError)
    assert missing.error.problems == ["tierkit:tier: missing from the stack's config; add the tier spec (see stacks/)"]
    assert missing.registrations == []
    broken = run_program(program.main, FakeCloud(), project="tierkit", stack="test",
                                   config={"tierkit:tier": "{not json"})
    assert isinstance(broken.error, program.ProgramError) and broken.registrations == []
