"""tierkit/providers/: the contract each provider implements in full, the registry, and the
inventory taking everything provider-specific from the provider."""

from __future__ import annotations

import inspect
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from tierkit import inventory as inv, providers
from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.planner import Plan
from tierkit.providers.base import Provider, RealServers
from tierkit.providers.lab import LabProvider
from tierkit.spec import TierSpec, load_stack, parse_spec, plan_for_spec

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = sorted(Provider.__abstractmethods__)
LAB_HOSTS = [Host(name=f"h{i}", address=f"10.211.7.{11 + i}", key_path="/k", netns="tks-t") for i in range(2)]


def baremetal(tmp_path: Path, **over: Any) -> dict:
    (tmp_path / "k").write_text("private")  # the key must be readable: validate checks it
    spec = {
        "tier": "single-gpu",
        "provider": {"kind": "baremetal", "hosts": [{"name": "gpu1", "address": "192.0.2.10", "key_path": str(tmp_path / "k")}]},
        "gpu": {"model": "l40s", "count": 1},
        "model": {"key": "llama-3.1-8b", "quantization": "fp8"},
    }
    return spec | over


def aws(tmp_path: Path) -> dict:
    (tmp_path / "id").write_text("private")
    (tmp_path / "id.pub").write_text("ssh-ed25519 AAAA test")
    return {
        "tier": "single-gpu",
        "provider": {"kind": "aws", "region": "us-east-1", "ssh_cidr": "203.0.113.0/24",
                     "public_key_path": str(tmp_path / "id.pub"), "private_key_path": str(tmp_path / "id")},
        "gpu": {"model": "l40s", "count": 1},
        "model": {"key": "llama-3.1-8b", "quantization": "fp8"},
    }


def test_the_registry_lists_every_provider_module():
    modules = {p.stem for p in (ROOT / "tierkit" / "providers").glob("*.py")} - {"__init__", "base"}
    assert set(providers.PROVIDERS) == modules == {"lab", "baremetal", "aws"}
    assert providers.DEFAULT_KIND == "lab"


@pytest.mark.parametrize("kind", ["lab", "baremetal", "aws"])
def test_each_provider_implements_every_member(kind):
    provider = providers.for_kind(kind)
    cls = type(provider)
    assert not getattr(cls, "__abstractmethods__", None)
    for member in MEMBERS:  # answered by the provider itself, or by RealServers for real machines
        owner = next(c for c in cls.__mro__ if member in vars(c))
        assert owner in (cls, RealServers), f"{cls.__name__}.{member} comes from {owner.__name__}"
    for member in ("problems", "provision", "hosts"):  # what no two providers share
        assert member in vars(cls), f"{cls.__name__} must state its own {member}"
    if kind == "lab":
        assert [m for m in MEMBERS if m in vars(cls)] == MEMBERS
    assert cls.kind == kind and issubclass(cls.config, BaseModel)
    assert cls.config.model_fields["kind"].annotation.__args__ == (kind,)
    assert isinstance(cls.load_balancer, bool)
    for member in MEMBERS:  # same signature as the contract's
        assert list(inspect.signature(getattr(cls, member)).parameters) == \
            list(inspect.signature(getattr(Provider, member)).parameters), member


def test_a_provider_missing_a_member_cannot_exist():
    class Half(Provider):
        kind: ClassVar[str] = "half"

        def problems(self, spec):
            return []

    with pytest.raises(TypeError, match="abstract"):
        Half()


@pytest.mark.parametrize("stack", ["single-gpu", "multi-gpu", "failover"])
def test_get_returns_the_specs_provider(stack):
    spec = load_stack(stack, ROOT)
    assert providers.get(spec) is providers.PROVIDERS["lab"]
    assert isinstance(providers.get(spec), LabProvider)


def test_a_spec_without_provider_gets_the_default():
    spec = parse_spec({"tier": "single-gpu", "gpu": {"model": "l40s", "count": 1}, "model": {"key": "tiny-llama"}})
    assert spec.provider.kind == providers.DEFAULT_KIND


def test_baremetal_and_aws_answers(tmp_path):
    bm = parse_spec(baremetal(tmp_path))
    p = providers.get(bm)
    assert p.hosts(bm) == [Host(name="gpu1", address="192.0.2.10", key_path=str(tmp_path / "k"))]
    assert p.model_path(bm) is None and p.group_vars(bm, p.hosts(bm)) == {}
    local = [Host(name="gpu1", address="127.0.0.2", key_path="/k")]
    assert p.allowed_sources(bm, local) == ["127.0.0.1"]  # the operator's machine, as routed
    assert p.derive_source(bm) == "plan"
    with p.configure_services(bm, p.hosts(bm)):
        pass
    plan = plan_for_spec(bm)
    assert p.notes(bm, plan, [], "http://192.0.2.10:8000") == [f"smoke gate from the plan: {plan.expected_tok_s:,.0f} tok/s expected"]

    cloud = parse_spec(aws(tmp_path))
    a = providers.get(cloud)
    assert a.derive_source(cloud) == "plan" and a.load_balancer
    in_vpc = Host(name="server1", address="198.51.100.1", private_address="10.20.1.5", private_network="10.20.0.0/16",
                  key_path="/k")
    assert a.allowed_sources(cloud, [in_vpc]) == ["10.20.0.0/16", str(cloud.provider.ssh_cidr)]
    with pytest.raises(TierkitError, match="--hosts: aws hosts come from the stack's outputs"):
        a.hosts(cloud)


def test_provider_problems_come_prefixed_with_the_spec_key(tmp_path):
    data = aws(tmp_path)
    data["provider"]["public_key_path"] = str(tmp_path / "missing.pub")
    with pytest.raises(TierkitError) as err:
        parse_spec(data)
    assert err.value.problems == [
        f"tierkit:tier.provider.public_key_path: {tmp_path / 'missing.pub'} does not exist; "
        "create the key pair (ssh-keygen -t ed25519) or fix the path"]


def test_lab_problems_hold_the_lab_address_rules():
    base = yaml_failover()
    ok = parse_spec(base)
    assert providers.get(ok).problems(ok) == []
    for vip, subnet, message in [
        ("10.77.40.11", "10.77.40.0/24", "failover.virtual_ip: 10.77.40.11 is a host's own address"),
        ("10.77.41.100", "10.77.40.0/24", "failover.virtual_ip: 10.77.41.100 is outside the hosts' subnet 10.77.40.0/24"),
    ]:
        bad = {**base, "provider": {**base["provider"], "subnet": subnet}, "failover": {"virtual_ip": vip}}
        with pytest.raises(TierkitError) as err:
            parse_spec(bad)
        assert any(p.startswith(f"tierkit:tier.{message}") for p in err.value.problems), err.value.problems
    no_subnet = {**base, "provider": {"kind": "lab", "name": "t"}}
    with pytest.raises(TierkitError, match="tierkit:tier.provider.subnet: a lab failover tier needs the lab's subnet"):
        parse_spec(no_subnet)


def yaml_failover() -> dict:
    return {
        "tier": "failover",
        "provider": {"kind": "lab", "name": "t", "subnet": "10.77.40.0/24"},
        "gpu": {"model": "l40s", "count": 1},
        "model": {"key": "tiny-llama"},
        "failover": {"virtual_ip": "10.77.40.100"},
    }


class Recording(Provider):
    """A provider that answers with markers, to show where the inventory takes its answers from."""

    kind: ClassVar[str] = "lab"
    config: ClassVar[type[BaseModel]] = BaseModel
    load_balancer: ClassVar[bool] = False
    entered: ClassVar[list[str]] = []

    def problems(self, spec: TierSpec) -> list[str]:
        return []

    def provision(self, spec, ctx, opts):
        raise AssertionError("not called")

    def hosts(self, spec: TierSpec) -> list[Host]:
        return LAB_HOSTS[:1]

    def model_path(self, spec: TierSpec) -> str | None:
        return "/from/the/provider"

    def group_vars(self, spec: TierSpec, hosts: list[Host]) -> dict[str, Any]:
        return {"vllm_package": "marker-package", "nccl_version": "9.9.9"}

    def host_vars(self, spec: TierSpec, hosts: list[Host]) -> dict[str, dict[str, Any]]:
        return {hosts[0].name: {"vllm_cpu_threads_bind": "marker-bind"}}

    def allowed_sources(self, spec: TierSpec, hosts: list[Host]) -> list[str]:
        return ["192.0.2.99"]

    @contextmanager
    def configure_services(self, spec: TierSpec, hosts: list[Host]) -> AbstractContextManager[None]:
        self.entered.append("in")
        yield

    def derive_source(self, spec: TierSpec) -> str:
        return "plan"

    def notes(self, spec: TierSpec, plan: Plan, hosts: list[dict[str, Any]], endpoint: str) -> list[str]:
        return ["marker note"]


def test_inventory_takes_lab_settings_only_from_the_lab_provider(monkeypatch):
    spec = load_stack("single-gpu", ROOT)
    real = inv.render(spec, LAB_HOSTS[:1]).group_vars
    assert real["vllm_package"] == "vllm-cpu" and real["vllm_model"] == "/opt/tierkit/models/tiny-llama"
    monkeypatch.setitem(providers.PROVIDERS, "lab", Recording())
    rendered = inv.render(spec, LAB_HOSTS[:1])
    gv = rendered.group_vars
    assert gv["vllm_package"] == "marker-package" and gv["nccl_version"] == "9.9.9"
    assert rendered.hosts[LAB_HOSTS[0].name]["vllm_cpu_threads_bind"] == "marker-bind"
    assert gv["vllm_model"] == "/from/the/provider"
    assert gv["vllm_allowed_sources"] == ["192.0.2.99"]
    lab_only = {"vllm_wheelhouse", "vllm_env", "nvidia_repo_url", "nccl_all_reduce_perf", "nvidia_driver_version"}
    assert lab_only & set(gv) == set()  # none of the lab's settings come from anywhere else


def test_configure_enters_the_providers_services(monkeypatch, tmp_path):
    from tierkit import ansible, configure
    from tierkit.paths import StackPaths

    monkeypatch.setitem(providers.PROVIDERS, "lab", Recording())
    Recording.entered.clear()
    seen = {}

    def fake_run(playbook, path, hosts, **kw):
        seen["entered"] = list(Recording.entered)
        seen["log"] = kw["log_file"]
        return ansible.RunResult(playbook=str(playbook), rc=0, status="successful", elapsed_s=0.0)

    monkeypatch.setattr(ansible, "run_playbook", fake_run)
    paths = StackPaths(tmp_path, "single-gpu")
    result = configure.configure(load_stack("single-gpu", ROOT), LAB_HOSTS[:1], paths, "site")
    assert result.ok and seen == {"entered": ["in"], "log": paths.logs_dir / "site.log"}
    assert (paths.inventory_dir / "hosts.yml").is_file()


def test_fleet_notes_are_the_providers(monkeypatch):
    pytest.importorskip("pulumi")
    from tierkit import fleet

    spec = load_stack("single-gpu", ROOT)
    monkeypatch.setitem(providers.PROVIDERS, "lab", Recording())
    assert fleet.notes(spec, plan_for_spec(spec), [], "http://x:1") == ["marker note"]


def test_lab_hosts_of_a_stack_not_deployed_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TIERKIT_LAB_DIR", str(tmp_path))  # no lab recorded there
    spec = load_stack("single-gpu", ROOT)
    with pytest.raises(TierkitError) as info:
        LabProvider().hosts(spec)
    assert info.value.problems == [f"--hosts: this stack's lab {spec.provider.name!r} is not up; deploy the stack "
                                   f"(`tierkit up --stack NAME`), or pass --hosts FILE"]
