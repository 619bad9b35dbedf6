"""`tierkit status`: what runs where for a deployed stack, answered within a bound.

It takes the stack's hosts (from its provider: the lab's record, the spec's bare-metal hosts, or
`--hosts`, e.g. the stack's `hosts` output), reads what the deploys left (the last smoke report,
the run history), probes the hosts and the endpoint in parallel (tierkit/probe.py; inside the
hosts' network namespace when they have one), and says whether everything answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tierkit import history, netns
from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.paths import StackPaths
from tierkit.probe import ProbeReport, ProbeRequest, probe
from tierkit.smoke.gates import from_report
from tierkit.spec import TierSpec, plan_for_spec

PROBE_TIMEOUT_S = 3.0
DEADLINE_S = 15.0  # the whole status, a host down included
HISTORY_SHOWN = 5


class LastSmoke(BaseModel):
    at: datetime
    endpoint: str | None
    passed: bool
    output_throughput: float | None
    gates: list[str]
    gate_source: str | None
    plan_vs_measured: list[dict[str, Any]]


class StatusReport(BaseModel):
    stack: str
    tier: str
    probe: ProbeReport
    vip_holders: list[str] | None  # the failover tier only
    last_smoke: LastSmoke | None
    plan: dict[str, Any]
    runs: list[history.Run]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _last_smoke(path: Path) -> LastSmoke | None:
    try:
        report = json.loads(path.read_text())
        at = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    except (FileNotFoundError, ValueError):
        return None
    return LastSmoke(at=at, endpoint=report.get("endpoint"), passed=bool(report.get("passed")), output_throughput=report.get("output_throughput"),
                     gates=[g.verdict() for g in from_report(report)], gate_source=report.get("gate_source"),
                     plan_vs_measured=report.get("plan_vs_measured", []))


def run_probe(request: ProbeRequest, namespace: str | None) -> ProbeReport:
    """The probe: here, or in `namespace` when the hosts need one (a subprocess there), bounded."""
    if namespace is None:
        return probe(request)
    argv = netns.wrap([sys.executable, "-m", "tierkit.probe"], namespace)
    try:
        done = subprocess.run(argv, input=request.model_dump_json(), capture_output=True, text=True,
                              timeout=DEADLINE_S - 2)
    except subprocess.TimeoutExpired:
        raise TierkitError(f"status: the probes did not finish within {DEADLINE_S - 2:.0f} s", exit_code=1) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise TierkitError(f"status: the probe failed ({last})", exit_code=1)
    return ProbeReport.model_validate_json(done.stdout)


def collect(spec: TierSpec, paths: StackPaths, hosts: list[Host], vllm_port: int, endpoint: str | None) -> StatusReport:
    """Probe the stack's hosts and endpoint and gather what its last runs left."""
    if not hosts:
        raise TierkitError(f"--hosts: {paths.stack} has no hosts; run `tierkit up --stack {paths.stack}` first")
    smoke = _last_smoke(paths.smoke_report)
    vip = str(spec.failover.virtual_ip) if spec.failover is not None else None
    url = endpoint or (smoke.endpoint if smoke and smoke.endpoint else None) or (
        f"http://{vip}:{spec.serving.port}" if vip else f"http://{hosts[0].address}:{spec.serving.port}")
    request = ProbeRequest(hosts=hosts, vllm_port=vllm_port, endpoint=url, virtual_ip=vip, timeout_s=PROBE_TIMEOUT_S)
    report = run_probe(request, netns.for_hosts(hosts))
    problems = [f"{h.name}: {h.problem}" for h in report.hosts if h.problem]
    if not report.endpoint.healthy:
        problems.append(f"endpoint {url}: {report.endpoint.problem or 'not healthy'}")
    holders = None
    if vip is not None:
        holders = [h.name for h in report.hosts if h.holds_vip]
        if len(holders) != 1:
            problems.append(f"virtual IP {vip}: held by {', '.join(holders) if holders else 'no host'}; exactly one must hold it")
    if smoke is None:
        problems.append("smoke: no smoke report recorded; run `tierkit up` (or `tierkit smoke --stack`)")
    elif not smoke.passed:
        problems.append("smoke: the last smoke gate failed")
    return StatusReport(stack=paths.stack, tier=spec.tier, probe=report, vip_holders=holders, last_smoke=smoke,
                        plan=plan_for_spec(spec).to_json(), runs=history.load(paths.history, HISTORY_SHOWN),
                        problems=problems)
