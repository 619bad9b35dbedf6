"""The fleet as Pulumi components, each a child of the last:

    Servers (the provider's resources) > Readiness (`tierkit wait-ssh`) > Configure
    (`tierkit configure`: site.yml, whose topology and NCCL gates verify the GPUs) > Smoke
    (`tierkit smoke`, after `tierkit calibrate` where the provider derives the floor that way)

Every step after Servers is a `local.Command` running a tierkit verb, so each is usable on its
own. The spec reaches every verb the same way, as `--stack NAME` (run from the project root).
Secrets (API key, HF token) reach commands only through their environment, never their command
line; the commands that get them log stderr only, and configure's stdout is a secret output. What
a later run needs travels through outputs: the hosts and their pinned host keys (Readiness's
stdout, a secret) are Configure's stdin. Files under `.tierkit/<stack>/` (tierkit/paths.py) are
caches each step rebuilds from its inputs.
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
from tierkit.hosts import HostList
from tierkit.inventory import HF_TOKEN_ENV, VLLM_API_KEY_ENV
from tierkit.planner import Plan
from tierkit.providers import StackContext
from tierkit.smoke.endpoint import CLIENT_API_KEY_ENV
from tierkit.smoke.gates import from_report
from tierkit.spec import TierSpec

READY_TIMEOUT_S = 600  # a cloud instance can take minutes to boot; the lab answers in seconds
ASSET_DIRS = ("playbooks", "roles")
# What the smoke report holds the measured per-stream decode rate against where a calibration
# probe measured the endpoint first (the plan's GPU figure cannot describe a CPU rehearsal).
CALIBRATED_PREDICTION = "the calibration probe's single-stream rate on this endpoint (not the plan's GPU figure)"


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


def client_command(hosts: list[dict[str, Any]], argv: list[str]) -> str:
    """`argv` as a shell command line for a client of these hosts (Host dicts), run in the
    network namespace they are reached from."""
    return shlex.join(netns.wrap(argv, netns.for_hosts(HostList.validate_python(hosts))))


class Servers(pulumi.ComponentResource):
    """The servers, from the spec's provider. `hosts`: Host dicts; `endpoint`: a load balancer's
    URL when the provider makes one."""

    def __init__(self, spec: TierSpec, ctx: StackContext, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tierkit:fleet:Servers", "servers", None, opts)
        made = providers.get(spec).provision(spec, ctx, pulumi.ResourceOptions(parent=self))
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
        paths = ctx.paths
        self.command = local.Command(
            "wait-ssh",
            create=ctx.command("wait-ssh", "--hosts", "-", "--known-hosts", str(paths.known_hosts),
                               "--timeout", str(READY_TIMEOUT_S), "--json"),
            stdin=servers.hosts.apply(json.dumps),
            logging=local.Logging.STDERR,
            delete=shlex.join(["rm", "-f", str(paths.known_hosts)]),
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
        env = {k: v for k, v in ((VLLM_API_KEY_ENV, secrets.api_key), (HF_TOKEN_ENV, secrets.hf_token)) if v is not None}
        # --json: progress on stderr (logged), the recap as JSON on stdout (a secret output).
        paths = ctx.paths
        self.triggers = [spec_hash(spec), content_hash(ctx.root), ready.command.stdout]
        self.command = local.Command(
            "configure",
            create=ctx.command("configure", "--stack", ctx.stack, "--hosts", "-", "--json"),
            stdin=ready.command.stdout,
            delete=shlex.join(["rm", "-rf", str(paths.inventory_dir), str(paths.logs_dir)]),
            environment=env or None,
            triggers=self.triggers,
            logging=local.Logging.STDERR,
            dir=str(ctx.root),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ready.command], delete_before_replace=True,
                                        additional_secret_outputs=["stdout"]),
        )
        self.register_outputs({})


def summarize(report: dict[str, Any], gate_source: str | None) -> dict[str, Any]:
    """The smoke report's headline figures and verdicts (the full report stays in its JSON file)."""
    keys = ("passed", "completed", "failed", "output_throughput", "total_token_throughput", "p99_ttft_ms", "p99_tpot_ms")
    summary = {k: report.get(k) for k in keys}
    summary["gates"] = [g.verdict() for g in from_report(report)]
    summary["gate_source"] = gate_source or report.get("gate_source")
    return summary


class Smoke(pulumi.ComponentResource):
    """`tierkit smoke --stack` against the endpoint: load and gates from the spec (and the plan);
    a failed gate fails the deploy. Replaced delete-before-create (the old run's delete removes the
    report it wrote, not the new one's).

    Where the provider derives the floor from a calibration (the lab, with `min_output_tok_s:
    derive`), `tierkit calibrate` first measures the endpoint and its floor replaces the plan's
    (the plan's GPU figures cannot gate a CPU rehearsal); the output says so."""

    def __init__(self, spec: TierSpec, ctx: StackContext, configure: Configure, ready: Readiness,
                 endpoint: pulumi.Output, secrets: Secrets) -> None:
        super().__init__("tierkit:fleet:Smoke", "smoke", None, pulumi.ResourceOptions(parent=configure))
        tk = ctx.tierkit()
        env = {CLIENT_API_KEY_ENV: secrets.api_key} if secrets.api_key is not None else None
        report_file = ctx.paths.smoke_report
        after: list[pulumi.Resource] = [configure.command]
        floor: pulumi.Output = pulumi.Output.from_input(None)  # None: the spec's own gate
        predicted: pulumi.Output = pulumi.Output.from_input(None)  # None: the plan's own figure
        statement: pulumi.Output = pulumi.Output.from_input(None)
        if spec.smoke.min_output_tok_s == "derive" and providers.get(spec).derive_source(spec) == "calibration":
            calibrate = local.Command(
                "calibrate",
                create=pulumi.Output.all(ready.hosts, endpoint).apply(
                    lambda a: client_command(a[0], [tk, "calibrate", "--stack", ctx.stack, "--endpoint", a[1], "--json"])
                ),
                environment=env,
                triggers=configure.triggers,
                logging=local.Logging.STDERR,
                dir=str(ctx.root),
                opts=pulumi.ResourceOptions(parent=self, depends_on=after, delete_before_replace=True),
            )
            measured = calibrate.stdout.apply(json.loads)
            floor = measured.apply(lambda c: c["min_output_tok_s"])
            predicted = measured.apply(lambda c: c["single_stream_tok_s"])
            statement = measured.apply(lambda c: c["statement"])
            after = [calibrate]

        def command(args: list[Any]) -> str:
            hosts, url, minimum, stream = args
            argv = [tk, "smoke", "--stack", ctx.stack, "--endpoint", url, "--json", str(report_file)]
            if minimum is not None:
                argv += ["--min-output-tok-s", str(minimum)]
            if stream is not None:
                argv += ["--expect-stream-tok-s", str(stream), "--expect-source", CALIBRATED_PREDICTION]
            # The report table goes to stderr (logged); stdout carries the JSON report alone.
            return f"{client_command(hosts, argv)} >&2 && cat {shlex.quote(str(report_file))}"

        self.command = local.Command(
            "smoke",
            create=pulumi.Output.all(ready.hosts, endpoint, floor, predicted).apply(command),
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
    """What a reader of the outputs must know about how this deploy was tested (the provider's)."""
    return providers.get(spec).notes(spec, plan, hosts, endpoint)
