"""`tierkit status --stack NAME`: the deployed stack's hosts, endpoint, VIP holder and last runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from tierkit.commands.options import FileOpt, HostsOpt, StackOpt
from tierkit.console import console, print_json


def _show(report) -> None:  # a tierkit.status.StatusReport
    hosts = Table(title=f"{report.stack} ({report.tier}): hosts", title_justify="left")
    for column in ("host", "address", "ssh", "vLLM", "models", "VIP"):
        hosts.add_column(column)
    for h in report.probe.hosts:
        vip = "" if h.holds_vip is None else ("holder" if h.holds_vip else "-")
        hosts.add_row(h.name, h.address, "up" if h.ssh else "DOWN", Text(h.vllm_version or "no answer"),
                      Text(", ".join(h.models) or "-"), vip)
    console.print(hosts)
    e = report.probe.endpoint
    console.print(Text(f"endpoint: {e.url} {'healthy' if e.healthy else 'NOT healthy'}; serves {', '.join(e.models) or 'nothing'}"))
    if report.vip_holders is not None:
        console.print(Text(f"virtual IP holder: {', '.join(report.vip_holders) or 'none'}"))
    s = report.last_smoke
    if s is not None:
        console.print(Text(f"last smoke: {'passed' if s.passed else 'FAILED'} at {s.at:%Y-%m-%d %H:%M:%S} UTC, "
                           f"output {s.output_throughput or 0:,.1f} tok/s (gates from {s.gate_source})"))
        for gate in s.gates:
            console.print(Text(f"  {gate}"))
    p = report.plan
    dp = p.get("data_parallel", 1)  # plans recorded before data-parallel engines have none
    console.print(Text(f"plan: {p['tier']} {p['servers']}x{p['gpus_per_server']} GPUs, TP={p['tensor_parallel']} "
                       f"PP={p['pipeline_parallel']}{f' DP={dp}' if dp > 1 else ''}, expected {p['expected_tok_s']:,.0f} tok/s, {p['max_users']} users"))
    if report.runs:
        runs = Table(title="last runs of `tierkit up`", title_justify="left")
        for column in ("at", "engine", "ok", "seconds", "steps", "output tok/s", "decode predicted/measured"):
            runs.add_column(column)
        for r in report.runs:
            steps = " ".join(f"{s.name} {s.seconds:.0f}s" for s in r.steps)
            sm = r.smoke
            decode = "-" if sm is None or sm.predicted_stream_tok_s is None else (
                f"{sm.predicted_stream_tok_s:,.1f}/{sm.measured_stream_tok_s or 0:,.1f} ({sm.error_pct or 0:+.1f}%)")
            runs.add_row(f"{r.at:%m-%d %H:%M}", r.engine, "yes" if r.ok else "NO", f"{r.seconds:.0f}", Text(steps),
                         "-" if sm is None or sm.output_throughput is None else f"{sm.output_throughput:,.1f}", decode)
        console.print(runs)
    for problem in report.problems:
        console.print(Text(f"problem: {problem}", style="red"))


def status_command(
    stack: StackOpt = None,
    file: FileOpt = None,
    hosts: HostsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """What runs where: each host's reachability, vLLM version and served model, the endpoint, the VIP holder (failover), the last smoke result and the plan it was gated on, and the last runs of `tierkit up` side by side.

    Exits 0 when everything answers, 1 otherwise (for cron jobs and CI); answers within 15 s with a host down. The API key for /v1/models is the client's, as `tierkit smoke` reads it ($OPENAI_API_KEY).
    """
    from tierkit import stackfiles
    from tierkit.inventory import vllm_port
    from tierkit.status import collect

    spec = stackfiles.load(stack, file)
    found = stackfiles.resolve_hosts(spec, hosts)
    report = collect(spec, stackfiles.paths(stack, file), found, vllm_port(spec), None)
    if as_json:
        print_json({"ok": report.ok, **report.model_dump(mode="json")})
    else:
        _show(report)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
