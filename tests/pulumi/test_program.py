"""The Pulumi program under the SDK's mock runtime: four stacks x three providers.

A fake backend (mock_cloud.FakeCloud) answers each registration the way the real providers would
(a lab's JSON, EC2 addresses, a smoke report) without running anything;
`tierkit.rehearsal.runtime.run_program`, the rehearsal's own harness, installs it in Pulumi's mock
runtime and records the graph (parents, dependencies) and secret-ness. The aws provider's own
checks are in test_aws.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from mock_cloud import (API_KEY, CALIBRATED_FLOOR, CALIBRATED_STREAM, HF_TOKEN, PROVIDERS, ROOT, STACKS, FakeCloud,
                        host_key, parent_name, run, stack_spec, variant)

from tierkit import program
from tierkit.rehearsal.runner import COMMAND
from tierkit.rehearsal.runtime import has_secret, is_sealed, reveal, run_program
from tierkit.spec import parse_spec, plan_for_spec

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
    assert set(exports) == {"endpoint", "hosts", "host_keys", "plan", "smoke", "notes"}
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


def test_no_secrets_configured_on_the_lab_means_no_environment(keys: Path) -> None:
    result = run(variant("single-gpu", "lab", keys), secrets=False)
    assert result.named("configure").inputs.get("environment") is None
    assert result.named("smoke").inputs.get("environment") is None
    assert "apiKey" not in result.exports


@pytest.mark.parametrize("provider", ["baremetal", "aws"])
def test_off_the_lab_an_api_key_is_generated_once_and_kept_secret(provider: str, keys: Path) -> None:
    result = run(variant("single-gpu", provider, keys), secrets=False)
    made = result.named("api-key")
    assert "stdout" in made.secret_outputs and made.plain("logging") == "none"
    assert is_sealed(result.states[made.urn]["stdout"])
    assert made.inputs.get("triggers") is None  # made once: nothing replaces it
    assert result.exports["apiKey"].secret
    env = result.named("configure").plain("environment")
    assert set(env) == {"TIERKIT_API_KEY"} and is_sealed(result.named("configure").inputs["environment"])
    assert set(result.named("smoke").plain("environment")) == {"OPENAI_API_KEY"}


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


@pytest.mark.parametrize("provider", PROVIDERS)
def test_host_keys_only_as_secret_outputs(provider: str, keys: Path) -> None:
    """Readiness's output (hosts with their pinned keys) is secret; the plain `hosts` export has
    no key; Configure gets the pinned hosts on stdin, never from a file or its command line."""
    result = run(variant("failover", provider, keys))
    wait, configure = result.named("wait-ssh"), result.named("configure")
    names = [h["name"] for h in json.loads(wait.plain("stdin"))]
    pins = [host_key(n) for n in names]
    assert "stdout" in wait.secret_outputs and is_sealed(result.states[wait.urn]["stdout"])
    assert result.exports["host_keys"].secret and result.exports["host_keys"].value == dict(zip(names, pins))
    assert not result.exports["hosts"].secret
    assert all("host_key" not in h for h in result.exports["hosts"].value)
    for name, export in result.exports.items():
        if not export.secret:
            assert not any(pin in json.dumps(export.value) for pin in pins), f"a host key in the plain export {name}"
    for reg in result.registrations:  # anywhere else a key appears, it is sealed
        plain = json.dumps({k: v for k, v in reg.inputs.items() if not has_secret(v)})
        assert not any(pin in plain for pin in pins), f"{reg.name}: a host key outside a secret"
    assert is_sealed(configure.inputs["stdin"])
    assert [h["host_key"] for h in json.loads(configure.plain("stdin"))] == pins
    create = configure.plain("create")
    assert create.endswith("configure --stack test --hosts - --json") and "hosts.json" not in create


@pytest.mark.parametrize("provider", PROVIDERS)
def test_commands_replace_delete_first(provider: str, keys: Path) -> None:
    """A replaced command's old delete never runs after its new create at the same paths (it
    would remove the new run's known_hosts, inventory, logs or smoke report, or the new lab)."""
    result = run(variant("single-gpu", provider, keys))
    commands = result.by_type(COMMAND)
    assert commands and all(c.delete_before_replace for c in commands), [c.name for c in commands]
