"""How a run shows: live progress on stderr, a results table, the verdict line, the JSON file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tierkit.smoke.metrics import LATENCIES, STATISTICS, output_tokens
from tierkit.smoke.run import SmokeReport
from tierkit.smoke.stream import RequestResult

if TYPE_CHECKING:
    from tierkit import junit

LATENCY_LABELS = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2el": "E2EL"}


class LiveProgress:
    """A progress line with completed/failed counts and the running output tok/s."""

    def __init__(self, console: Console, total: int | None) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            refresh_per_second=4,
            transient=True,
        )
        self._task = self._progress.add_task("connecting", total=total, status="")
        self._first_start: float | None = None
        self._tokens = 0
        self._failed = 0

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.stop()

    def phase(self, message: str) -> None:
        self._progress.update(self._task, description=message)

    def on_result(self, result: RequestResult) -> None:
        if self._first_start is None:
            self._first_start = result.start
            self._progress.update(self._task, description="running")
        if result.success:
            self._tokens += output_tokens(result)
        else:
            self._failed += 1
        elapsed = max(time.perf_counter() - self._first_start, 1e-9)
        status = f"{self._tokens / elapsed:,.0f} out tok/s  {self._failed} failed"
        self._progress.update(self._task, advance=1, status=status)


def results_table(report: SmokeReport) -> Table:
    m = report.metrics
    table = Table(title=f"tierkit smoke: {report.model} at {report.settings.endpoint.url}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("Successful requests", f"{m['completed']:.0f}"),
        ("Failed requests", f"{m['failed']:.0f}"),
        ("Maximum request concurrency", str(report.settings.concurrency)),
        ("Benchmark duration (s)", f"{m['duration']:.2f}"),
        ("Total input tokens", f"{m['total_input_tokens']:.0f}"),
        ("Total generated tokens", f"{m['total_output_tokens']:.0f}"),
        ("Request throughput (req/s)", f"{m['request_throughput']:.2f}"),
        ("Output token throughput (tok/s)", f"{m['output_throughput']:.2f}"),
        ("Total token throughput (tok/s)", f"{m['total_token_throughput']:.2f}"),
        ("Client CPU (s)", f"{report.client_cpu_s:.2f}"),
    ]
    for label, value in rows:
        table.add_row(label, value)
    return table


def latency_table(report: SmokeReport) -> Table:
    table = Table(title="latency (ms)", title_justify="left")
    table.add_column("")
    for stat in STATISTICS:
        table.add_column(stat, justify="right")
    for name in LATENCIES:
        table.add_row(LATENCY_LABELS[name], *(f"{report.metrics[f'{stat}_{name}_ms']:.2f}" for stat in STATISTICS))
    return table


def gates_table(report: SmokeReport) -> Table:
    table = Table(title=f"gates (from {report.settings.gates.source})", title_justify="left")
    for column in ("gate", "measured", "required", "verdict"):
        table.add_column(column)
    for gate in report.gates:
        verdict = "[green]pass[/]" if gate.passed else "[red]FAIL[/]"
        table.add_row(gate.name, Text(gate.measured_text()), Text(gate.required_text()), verdict)
    return table


def plan_table(report: SmokeReport) -> Table:
    table = Table(title="plan vs measured", title_justify="left")
    for column in ("figure", "predicted", "measured", "error", "predicted by"):
        table.add_column(column)
    for c in report.plan_vs_measured:
        measured = "-" if c.measured is None else f"{c.measured:,.1f} {c.unit}"
        error = "-" if c.error_pct is None else f"{c.error_pct:+.1f}%"
        table.add_row(c.name, f"{c.predicted:,.1f} {c.unit}", measured, error, Text(c.source))
    return table


def verdict_line(report: SmokeReport) -> str:
    """`PASS: ...` or `FAIL: <gate> <measured>, required <op> <limit>; ...` (plain text)."""
    if report.passed:
        return f"PASS: {len(report.gates)} gates met at {report.metrics['output_throughput']:.1f} output tok/s"
    return "FAIL: " + "; ".join(g.describe() for g in report.failed_gates)


def show(console: Console, report: SmokeReport) -> None:
    console.print(results_table(report))
    console.print(latency_table(report))
    if report.failures:
        table = Table(title="failed requests by reason", title_justify="left")
        table.add_column("reason")
        table.add_column("count", justify="right")
        for reason, count in report.failures.items():
            table.add_row(Text(reason), str(count))
        console.print(table)
    stream = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.stream.items())
    console.print(f"stream: {stream}", markup=False, highlight=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    if report.plan_vs_measured:
        console.print(plan_table(report))
    console.print(gates_table(report))
    style = "bold green" if report.passed else "bold red"
    console.print(verdict_line(report), style=style, markup=False, highlight=False, soft_wrap=True)


def write_json(path: Path, report: SmokeReport) -> None:
    path.write_text(json.dumps(report.as_json(), indent=2) + "\n")


def junit_suite(report: SmokeReport) -> junit.Suite:
    """One JUnit test case per gate, so a CI report shows why the deploy did not count."""
    from tierkit.smoke.junit_suite import gates_suite  # XML only when a report is asked for

    return gates_suite(f"tierkit smoke {report.settings.endpoint.url}", report.gates, report.plan_vs_measured,
                       report.settings.gates.source, f"{report.settings.endpoint.url}, model {report.model}",
                       float(report.metrics["duration"]))


def write_junit(path: Path, report: SmokeReport) -> None:
    from tierkit import junit

    junit.write(path, [junit_suite(report)])
