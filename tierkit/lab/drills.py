"""Failover drills: inject faults into a failover pair in the lab and measure what clients see.

Clients of lab hosts live in the lab's switch network namespace, so every request here is sent
from a thread that entered it (`netns.call_in`); faults and host commands go through `Lab`. A drill
returns figures and asserts nothing: tests/lab/test_failover.py judges them, bench/failover.py
repeats them and prints them.

- `stop_vllm`: vLLM stops on one node during a smoke run through the VIP. Failed requests are
  split by when they started: before the node's vLLM lost its engine (in flight on it: may
  fail), or after (new requests: must all succeed).
- `steady_state`: a smoke run through the VIP, and how many requests each vLLM answered.
- `take_down`: the VIP holder goes down (killed with its cable pulled, or cut off) while a
  prober sends a small completion through the VIP every `PROBE_INTERVAL_S`; takeover is the
  time from the fault to the first success of a probe sent after it.
- `hang_engine`: a node's engine hangs (its engine core stopped with SIGSTOP; vLLM's /health
  still answers 200) during a smoke run through the VIP; the time until both HAProxies have it
  out of the pool, and the failed requests split by when they started.
- `rolling_restart`: configure runs with a changed vLLM setting while a continuous load of streamed
  completions goes through the VIP; every node's vLLM restarts, one at a time, each drained from
  both HAProxies first: no request may fail, in flight or new.
- `soak`: a long smoke run at full load through the VIP, watched for false alarms: every VRRP
  transition keepalived logged on either node during it (a VIP move, a FAULT) and the holders
  seen by polling.
- `partition` / `heal`: split a node off the switch with its carrier up (split brain).
- `holders`, `wait_for_single_holder`, `watch_holders`, `holders_watched`: which nodes have the VIP on their
  interface, read from each host's own network namespace (a cut-off host is still readable).
- `backend_stats`: HAProxy's per-vLLM counters on a node (its stats page on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import http.client
import json
import shlex
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import SecretStr

from tierkit import netns
from tierkit.configure import configure
from tierkit.errors import TierkitError
from tierkit.inventory import HAPROXY_BACKEND, secret_vars, vllm_port
from tierkit.lab import network
from tierkit.lab.lab import Lab, ssh_argv
from tierkit.paths import StackPaths
from tierkit.smoke.endpoint import Endpoint, parse_endpoint
from tierkit.smoke.gates import Gates
from tierkit.smoke.http import ConnectionPool, build_request
from tierkit.smoke.run import SmokeSettings, run_smoke
from tierkit.smoke.stream import RequestResult
from tierkit.spec import TierSpec, parse_spec, spec_data_from_stack_file, stack_path


# roles/failover defaults (failover_stats_port), vars (failover_log_tag) and roles/vllm vars
# (vllm_service); a unit test keeps these in step with the roles.
HAPROXY_STATS_PORT = 8404
VLLM_SERVICE = "vllm"
FAILOVER_LOG_TAG = "tierkit-failover"

# vLLM's engine core process title (`set_process_title("EngineCore_DP<rank>")` with the prefix
# VLLM_PROCESS_NAME_PREFIX, "VLLM", in vllm/v1/engine/core.py and vllm/utils/system_utils.py).
ENGINE_CORE = "VLLM::EngineCore"
STOP_TIMEOUT_S = 300
PROBE_INTERVAL_S = 0.1
PROBE_TIMEOUT_S = 2.0
DownFault = Literal["kill", "cut-link"]
T = TypeVar("T")


@dataclass(frozen=True)
class Pair:
    """A failover tier deployed on a lab: its hosts, VIP, port and model."""

    lab: Lab
    vip: str
    port: int  # HAProxy's, on the VIP
    backend_port: int  # each vLLM's, on its node
    model: str
    api_key: SecretStr | None = None

    @classmethod
    def of(cls, lab: Lab, spec: TierSpec) -> Pair:
        """The pair serving `spec` on `lab`, with the API key the deploy gave vLLM (if any)."""
        if spec.failover is None:
            raise TierkitError("tier: the drills need a failover tier with failover.virtual_ip; use the failover stack")
        vip = spec.failover.virtual_ip
        if vip not in lab.subnet:
            raise TierkitError(f"failover.virtual_ip: {vip} is outside lab {lab.name}'s subnet {lab.subnet}; "
                               f"deploy the stack on this lab, or pick a VIP in {lab.subnet}")
        key = secret_vars()["vllm_api_key"]
        return cls(lab, str(vip), spec.serving.port, vllm_port(spec), spec.served_model_name,
                   SecretStr(key) if key else None)

    @property
    def nodes(self) -> list[str]:
        return [h.name for h in self.lab.hosts]

    @property
    def endpoint(self) -> Endpoint:
        return parse_endpoint(f"http://{self.vip}:{self.port}")

    def peer(self, node: str) -> str:
        return next(n for n in self.nodes if n != node)

    def ssh(self, node: str, command: str, timeout_s: float = 60) -> str:
        """stdout of a shell command on the node; a failure raises one line."""
        proc = self.lab.ssh(node, [command], capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise TierkitError(f"{node}: `{command}` failed ({proc.stderr.strip() or proc.returncode})")
        return proc.stdout


def lab_spec(lab_name: str, subnet: IPv4Network, stack: str = "failover", root: Path | None = None) -> TierSpec:
    """The stack's spec on a lab: as written when the lab has the stack's subnet (as `tierkit up`
    makes it), else moved onto the lab's subnet with the VIP at its first free address."""
    data: dict[str, Any] = spec_data_from_stack_file(stack_path(stack, root))
    spec = parse_spec(data)
    if getattr(spec.provider, "subnet", None) == subnet:
        return spec
    data["provider"] = {**data["provider"], "name": lab_name, "subnet": str(subnet)}
    data["failover"] = {**data["failover"], "virtual_ip": str(network.free_vip(subnet))}
    return parse_spec(data)


def deploy(lab_name: str, workdir: Path, stack: str = "failover",
           playbooks: tuple[str, ...] = ("site",)) -> Pair:
    """A lab pair serving the stack: `Lab.up` (nothing if it is up), then the playbooks on it
    (site.yml; the drills need only the `vllm` and `failover` stages), with the stack's files
    (inventory, logs) under `workdir`."""
    spec = parse_spec(spec_data_from_stack_file(stack_path(stack)))
    lab = Lab.up(lab_name, hosts=spec.server_count, gpu=spec.gpu.model, gpus_per_host=spec.gpu.count,
                 runtime=True, quiet=True)
    spec = lab_spec(lab.name, lab.subnet, stack)
    for playbook in playbooks:
        result = configure(spec, lab.hosts, StackPaths(workdir, stack), playbook, quiet=True)
        if not result.ok:
            raise TierkitError(*(f"{playbook}: {f.host}: {f.task}: {f.message}" for f in result.failures))
    return Pair.of(lab, spec)


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that pick the pair a bench measures (`bench_pair`'s arguments)."""
    parser.add_argument("--lab", default="tkfo-bench", help="lab name (default: tkfo-bench)")
    parser.add_argument("--stack", default="failover", help="stack whose spec the pair serves (default: failover)")
    parser.add_argument("--no-deploy", action="store_true", help="use the lab as it is; do not run the playbooks")


def bench_pair(lab_name: str, stack: str = "failover", *, as_is: bool = False) -> Pair:
    """The pair a bench measures: lab `lab_name` as it is (`as_is`: a pair `tierkit up` or an
    earlier run made), else deployed by `deploy` with its files in a temporary directory."""
    if as_is:
        lab = Lab.get(lab_name)
        return Pair.of(lab, lab_spec(lab.name, lab.subnet, stack))
    from tierkit.console import err_console

    with tempfile.TemporaryDirectory(prefix="tierkit-bench-") as workdir:
        err_console.print(f"deploying the {stack} stack on lab {lab_name} (minutes when cold)")
        return deploy(lab_name, Path(workdir), stack, playbooks=("vllm", "failover"))


# ---------------------------------------------------------------------------------------------
# Who holds the VIP.


def holders(pair: Pair) -> list[str]:
    """The running nodes whose interface carries the VIP now. A lab host's network namespace
    outlives the host, so a killed host still shows the addresses it had: a dead host holds none."""
    found = []
    for node in pair.nodes:
        if not pair.lab.machine(node).running():
            continue
        proc = netns.ip("-o", "-4", "addr", "show", "to", f"{pair.vip}/32", netns=network.host_netns(node), check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            found.append(node)
    return found


def wait_for_single_holder(pair: Pair, timeout_s: float) -> tuple[str, float]:
    """(the one holder, seconds it took) once exactly one node holds the VIP; TierkitError after timeout_s."""
    start = time.monotonic()
    while True:
        now = holders(pair)
        elapsed = time.monotonic() - start
        if len(now) == 1:
            return now[0], elapsed
        if elapsed > timeout_s:
            raise TierkitError(f"failover: {len(now)} nodes hold {pair.vip} after {timeout_s:g} s ({', '.join(now) or 'none'})")
        time.sleep(0.05)


def wait_for_holder(pair: Pair, node: str, timeout_s: float) -> float:
    """Seconds until `node` holds the VIP (others may too); TierkitError after timeout_s."""
    start = time.monotonic()
    while node not in holders(pair):
        if time.monotonic() - start > timeout_s:
            raise TierkitError(f"failover: {node} does not hold {pair.vip} after {timeout_s:g} s ({', '.join(holders(pair)) or 'nobody does'})")
        time.sleep(0.05)
    return time.monotonic() - start


@contextmanager
def holders_watched(pair: Pair, every_s: float = 0.1) -> Iterator[list[tuple[str, ...]]]:
    """The distinct holder sets seen while the block runs, in order (one entry: the VIP never
    moved), polled every `every_s` from a thread; the list is complete once the block ends."""
    seen: list[tuple[str, ...]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            now = tuple(holders(pair))
            if not seen or seen[-1] != now:
                seen.append(now)
            done.wait(every_s)

    watcher = threading.Thread(target=watch, name="vip-holders")
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def watch_holders(pair: Pair, seconds: float, every_s: float = 0.1) -> list[tuple[str, ...]]:
    """The distinct holder sets seen over `seconds`, in order (one entry: the VIP never moved)."""
    with holders_watched(pair, every_s) as seen:
        time.sleep(seconds)
    return seen


# ---------------------------------------------------------------------------------------------
# HAProxy's view.


@dataclass(frozen=True)
class ServerStats:
    status: str  # UP, DOWN, MAINT, "UP 1/2" while rising...
    sessions: int  # stot: requests sent to this vLLM
    responses_2xx: int
    retries: int  # wretr
    redispatches: int  # wredis
    # The longest queue wait, connect and response (to the first byte of the answer's head)
    # times in ms since HAProxy started or `clear counters` (its admin socket) reset them.
    qtime_max: int = 0
    ctime_max: int = 0
    rtime_max: int = 0


def parse_backend_stats(csv_text: str) -> dict[str, ServerStats]:
    """Per vLLM (by server name), the counters in HAProxy's stats CSV (`/stats;csv`), whose
    header line starts `# pxname,`."""
    lines = csv_text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("# pxname,")), None)
    if header is None:
        raise TierkitError("haproxy: the stats page is not HAProxy's CSV (no `# pxname,` header); check failover_stats_port")
    rows = csv.DictReader([lines[header].removeprefix("# "), *lines[header + 1:]])
    return {
        row["svname"]: ServerStats(
            status=row["status"],
            sessions=int(row["stot"] or 0),
            responses_2xx=int(row["hrsp_2xx"] or 0),
            retries=int(row["wretr"] or 0),
            redispatches=int(row["wredis"] or 0),
            qtime_max=int(row.get("qtime_max") or 0),
            ctime_max=int(row.get("ctime_max") or 0),
            rtime_max=int(row.get("rtime_max") or 0),
        )
        for row in rows
        if row["pxname"] == HAPROXY_BACKEND and row["svname"] not in ("BACKEND", "FRONTEND")
    }


def backend_stats(pair: Pair, node: str) -> dict[str, ServerStats]:
    """Per vLLM (by node name), the counters of `node`'s HAProxy."""
    url = f"http://127.0.0.1:{HAPROXY_STATS_PORT}/stats;csv"
    return parse_backend_stats(pair.ssh(node, shlex.join(["curl", "--silent", "--fail", url])))


def served_between(before: dict[str, ServerStats], after: dict[str, ServerStats]) -> dict[str, int]:
    """2xx responses each vLLM gave between two readings of the same HAProxy."""
    return {name: after[name].responses_2xx - before[name].responses_2xx for name in after}


def wait_until_up(pair: Pair, observer: str, server: str, timeout_s: float) -> float:
    """Seconds until `observer`'s HAProxy has `server` UP again; TierkitError after timeout_s."""
    start = time.monotonic()
    while True:
        status = backend_stats(pair, observer)[server].status
        if status == "UP":
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise TierkitError(f"failover: {observer}'s HAProxy still has {server} {status} after {timeout_s:g} s")
        time.sleep(2)


# Finished requests by `finished_reason` in vLLM's /metrics: these ended with output, whereas
# `abort` and `error` did not.
FINISHED_REASONS = ("stop", "length", "repetition")


# One-token requests finished (the health checks' completions: HAProxy's and keepalived's).
ONE_TOKEN_BUCKET = 'vllm:request_generation_tokens_bucket{'


def parse_vllm_finished(metrics_text: str) -> int:
    """Requests vLLM finished with output and more than one token, from its Prometheus text:
    `vllm:request_success_total` less the one-token requests (the `le="1.0"` bucket of
    `vllm:request_generation_tokens`), which are the health checks."""
    total = 0.0
    for line in metrics_text.splitlines():
        labels, _, value = line.rpartition(" ")
        if line.startswith("vllm:request_success_total{"):
            if any(f'finished_reason="{reason}"' in labels for reason in FINISHED_REASONS):
                total += float(value)
        elif line.startswith(ONE_TOKEN_BUCKET) and 'le="1.0"' in labels:
            total -= float(value)
    return int(total)


def vllm_finished(pair: Pair, node: str) -> int:
    """Completions the node's vLLM has finished since it started (the checks' one-token
    completions do not count)."""
    url = f"http://{pair.lab.host(node).address}:{pair.backend_port}/metrics"  # vLLM binds the node's address only
    return parse_vllm_finished(pair.ssh(node, shlex.join(["curl", "--silent", "--fail", url])))


# ---------------------------------------------------------------------------------------------
# Load and probes through the VIP (run these inside the lab's switch namespace).


def smoke_settings(pair: Pair, *, concurrency: int, duration_s: float, output_len: int,
                   input_len: int = 32, timeout_s: float = 60) -> SmokeSettings:
    return SmokeSettings(
        endpoint=pair.endpoint, model=pair.model, concurrency=concurrency, duration_s=duration_s,
        input_len=input_len, output_len=output_len, warmup=1, timeout_s=timeout_s,
        api_key=pair.api_key, gates=Gates(max_failed=0, source="failover drill"),
    )


class _Status:
    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status = 0

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.status = status

    def on_body(self, data: bytes, now: float) -> None:
        pass


def probe_request(pair: Pair) -> bytes:
    body = json.dumps({"model": pair.model, "prompt": "ping", "max_tokens": 1}).encode()
    return build_request("POST", pair.endpoint, "/v1/completions", body, pair.api_key)


async def exchange_once(endpoint: Endpoint, request: bytes, sink: _Status, timeout_s: float) -> str | None:
    """`request` on a fresh connection, its answer to `sink`: None once answered in full, else why not."""
    pool = ConnectionPool(endpoint, timeout_s)
    try:
        return await pool.exchange(request, sink)
    finally:
        pool.close()


async def probe(endpoint: Endpoint, request: bytes, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """One completion on a fresh connection: True on HTTP 200 within timeout_s."""
    sink = _Status()
    return await exchange_once(endpoint, request, sink, timeout_s) is None and sink.status == 200


async def smoke_around(settings: SmokeSettings, after_s: float, fault: Callable[[], T]) -> tuple[list[RequestResult], T]:
    """A smoke run with `fault` run (in a thread) `after_s` into its measured load: every
    request's result, and what `fault` returned."""
    results: list[RequestResult] = []
    running = asyncio.Event()

    def on_result(result: RequestResult) -> None:
        results.append(result)
        running.set()

    smoke = asyncio.create_task(run_smoke(settings, on_result=on_result))
    started = asyncio.create_task(running.wait())
    # The measured load is under way, or the run ended before its first result (an error: raised here).
    await asyncio.wait({smoke, started}, return_when=asyncio.FIRST_COMPLETED)
    if not running.is_set():
        started.cancel()
        report = smoke.result()
        raise TierkitError(f"failover: the smoke run ended before the fault, with no result "
                           f"({'; '.join(report.notes) or 'no request was measured'})")
    await asyncio.sleep(after_s)
    value = await asyncio.to_thread(fault)
    await smoke
    return results, value


# ---------------------------------------------------------------------------------------------
# Drill 1: steady state.


@dataclass
class SteadyOutcome:
    holder: str  # the VIP holder
    served: dict[str, int]  # completions each vLLM finished during the run (its /metrics)
    requests: int  # measured requests of the smoke run (plus a warmup one, served too)
    failed: int
    output_tok_s: float


def steady_state(pair: Pair, *, concurrency: int = 8, duration_s: float = 15.0, output_len: int = 64) -> SteadyOutcome:
    """A smoke run through the VIP; each vLLM's own counters say how much of it it served (the
    HAProxy counters also count keepalived's health checks)."""
    holder, _ = wait_for_single_holder(pair, 10)
    settings = smoke_settings(pair, concurrency=concurrency, duration_s=duration_s, output_len=output_len)
    before = {node: vllm_finished(pair, node) for node in pair.nodes}
    report = netns.call_in(pair.lab.netns, lambda: asyncio.run(run_smoke(settings)))
    served = {node: vllm_finished(pair, node) - before[node] for node in pair.nodes}
    return SteadyOutcome(holder=holder, served=served, requests=int(report.metrics["completed"] + report.metrics["failed"]),
                         failed=int(report.metrics["failed"]), output_tok_s=report.metrics["output_throughput"])


# ---------------------------------------------------------------------------------------------
# Drill 2: vLLM stops on a node during a smoke run.


@dataclass
class StopVllmOutcome:
    node: str  # where vLLM stopped
    holder: str  # the VIP holder, whose HAProxy was read
    requests: int
    failed_before: int  # started before vLLM's engine went: in flight on the node, may fail
    failed_after: int  # started after: new requests, which the tier promises to serve (0)
    abort_s: float  # from the stop command to the node's /health failing
    served_after: dict[str, int]  # 2xx per vLLM from then to the end of the run (HAProxy)
    errors: dict[str, int] = field(default_factory=dict)


def health_status(address: str, port: int) -> int:
    """vLLM's /health status code at address:port (0: no answer within a second)."""
    conn = http.client.HTTPConnection(address, port, timeout=1)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def wait_unhealthy(address: str, port: int, timeout_s: float) -> None:
    """Until vLLM's /health at address:port stops answering 200 (503 once its engine is gone,
    then no answer at all)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if health_status(address, port) != 200:
            return
        time.sleep(0.02)
    raise TierkitError(f"failover: vLLM at {address}:{port} still healthy {timeout_s:g} s after the stop")


def stop_vllm(pair: Pair, node: str, *, concurrency: int = 8, duration_s: float = 20.0,
              stop_after_s: float = 5.0, output_len: int = 64) -> StopVllmOutcome:
    """Stop vLLM on `node` `stop_after_s` into a smoke run through the VIP; vLLM stays stopped.

    On SIGTERM vLLM aborts its engine at once (its /health turns 503; the lab's client address
    may reach it, the inventory allows it): requests in flight on it then fail, and any request
    sent after that moment is new. `systemctl stop` returns much later: vLLM then waits for its
    open streams, which no longer move, until systemd's stop timeout kills it."""
    holder, _ = wait_for_single_holder(pair, 10)
    settings = smoke_settings(pair, concurrency=concurrency, duration_s=duration_s, output_len=output_len)
    address = pair.lab.host(node).address
    marks: dict[str, Any] = {}

    def stop() -> subprocess.Popen[str]:
        marks["t0"] = time.perf_counter()
        stopping = subprocess.Popen(ssh_argv(pair.lab.host(node), ["systemctl", "stop", VLLM_SERVICE]),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_unhealthy(address, pair.backend_port, 60)
        marks["t1"] = time.perf_counter()
        marks["stats"] = backend_stats(pair, holder)
        return stopping

    async def drill() -> tuple[list[RequestResult], dict[str, ServerStats], subprocess.Popen[str]]:
        results, stopping = await smoke_around(settings, stop_after_s, stop)
        return results, await asyncio.to_thread(backend_stats, pair, holder), stopping

    results, end_stats, stopping = netns.call_in(pair.lab.netns, lambda: asyncio.run(drill()))
    _, stderr = stopping.communicate(timeout=STOP_TIMEOUT_S)
    if stopping.returncode != 0:
        raise TierkitError(f"{node}: systemctl stop {VLLM_SERVICE} failed ({stderr.strip() or stopping.returncode})")
    t1 = marks["t1"]
    failed = [r for r in results if not r.success]
    return StopVllmOutcome(
        node=node,
        holder=holder,
        requests=len(results),
        failed_before=sum(r.start < t1 for r in failed),
        failed_after=sum(r.start >= t1 for r in failed),
        abort_s=t1 - marks["t0"],
        served_after=served_between(marks["stats"], end_stats),
        errors=dict(Counter(r.error for r in failed if r.error)),
    )


def start_vllm(pair: Pair, node: str, timeout_s: float = 600) -> float:
    """Start vLLM on `node` again; seconds until its peer's HAProxy has it UP."""
    pair.ssh(node, f"systemctl start {VLLM_SERVICE}")
    return wait_until_up(pair, pair.peer(node), node, timeout_s)


# ---------------------------------------------------------------------------------------------
# Drill 3: a node's engine hangs.


@dataclass
class HungEngineOutcome:
    node: str  # whose engine core was stopped
    holder: str  # the VIP holder
    out_of_pool_s: float  # SIGSTOP -> the last HAProxy to mark the node DOWN (their journals)
    health_while_hung: int  # the node's /health status once out of the pool (200: it does not see the hang)
    requests: int
    failed_before: int  # started before it left the pool: in flight on it, or sent to it while hung
    failed_after: int  # started after: new requests, which the tier promises to serve (0)
    holders_after: list[str]  # who holds the VIP at the end (the holder: a hung engine moves no VIP)
    errors: dict[str, int] = field(default_factory=dict)


def signal_engine(pair: Pair, node: str, signal: Literal["STOP", "CONT"]) -> float:
    """Send SIGSTOP or SIGCONT to the node's vLLM engine core process; returns when it was sent
    (the node's clock, seconds since the epoch: lab hosts share this machine's clock)."""
    return float(pair.ssh(node, f"pids=$(pgrep --full '^{ENGINE_CORE}') && kill -{signal} $pids && date +%s.%N"))


def marked_down_at(pair: Pair, observer: str, node: str, since: float) -> float | None:
    """When `observer`'s HAProxy first logged `node` DOWN at or after `since` (epoch seconds, from
    its journal: HAProxy's own record, free of the delay of reading it over SSH), or None."""
    lines = pair.ssh(observer, f"journalctl --unit haproxy --output short-unix --no-pager --since @{since:.6f}")
    marker = f"Server {HAPROXY_BACKEND}/{node} is DOWN"
    return next((float(line.split()[0]) for line in lines.splitlines() if marker in line), None)


def wait_out_of_pool(pair: Pair, node: str, since: float, timeout_s: float) -> float:
    """Until every node's HAProxy has `node` DOWN; returns the seconds from `since` (epoch) to the
    last of them marking it DOWN; TierkitError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = {observer: backend_stats(pair, observer)[node].status for observer in pair.nodes}
        if all(s.startswith("DOWN") for s in status.values()):
            break
        if time.monotonic() > deadline:
            raise TierkitError(f"failover: {node} is still in the pool {timeout_s:g} s after its engine hung ({status})")
        time.sleep(0.05)
    marks = [marked_down_at(pair, observer, node, since) for observer in pair.nodes]
    if None in marks:
        raise TierkitError(f"failover: a HAProxy has {node} DOWN but its journal does not say when; check `journalctl -u haproxy`")
    return max(m for m in marks if m is not None) - since


def hang_engine(pair: Pair, node: str, *, concurrency: int = 8, duration_s: float = 20.0, hang_after_s: float = 5.0,
                output_len: int = 32, timeout_s: float = 15.0, resume_timeout_s: float = 120.0) -> HungEngineOutcome:
    """Stop `node`'s engine core (SIGSTOP) `hang_after_s` into a smoke run through the VIP, as a
    deadlocked engine leaves it: vLLM's API server and /health keep answering, no request is
    served. The run's requests time out after `timeout_s` (the ones sent to the hung node wait
    that long). After the run the engine gets SIGCONT and the drill waits until both HAProxies
    have the node UP again."""
    holder, _ = wait_for_single_holder(pair, 10)
    settings = smoke_settings(pair, concurrency=concurrency, duration_s=duration_s, output_len=output_len,
                              timeout_s=timeout_s)
    address = pair.lab.host(node).address
    marks: dict[str, Any] = {}

    def hang() -> None:
        stopped_at = signal_engine(pair, node, "STOP")
        marks["out_of_pool_s"] = wait_out_of_pool(pair, node, stopped_at, 30)
        # Requests started from here on are new to the pool without the node (its checks' own
        # timestamps are earlier: this bound is late, which only counts more requests as before).
        marks["t1"] = time.perf_counter()
        marks["health"] = health_status(address, pair.backend_port)

    try:
        results, _ = netns.call_in(pair.lab.netns, lambda: asyncio.run(smoke_around(settings, hang_after_s, hang)))
    finally:
        signal_engine(pair, node, "CONT")
    for observer in pair.nodes:
        wait_until_up(pair, observer, node, resume_timeout_s)
    t1 = marks["t1"]
    failed = [r for r in results if not r.success]
    return HungEngineOutcome(
        node=node,
        holder=holder,
        out_of_pool_s=marks["out_of_pool_s"],
        health_while_hung=marks["health"],
        requests=len(results),
        failed_before=sum(r.start < t1 for r in failed),
        failed_after=sum(r.start >= t1 for r in failed),
        holders_after=holders(pair),
        errors=dict(Counter(r.error for r in failed if r.error)),
    )


# ---------------------------------------------------------------------------------------------
# Drill 4: the VIP holder goes down.


@dataclass
class TakedownOutcome:
    node: str  # the holder that went down
    fault: str
    takeover_s: float  # fault -> first success through the VIP of a probe sent after it
    new_holder: str
    probes_failed: int  # probes sent after the fault that failed before the first success
    fault_s: float  # how long injecting the fault took


def take_down(pair: Pair, fault: DownFault = "kill", timeout_s: float = 30.0) -> TakedownOutcome:
    """Take the VIP holder down and time the takeover. `kill`: SIGKILL the host and pull its
    cable, as a power loss leaves it (a killed lab host's namespace would still answer for its
    addresses); `cut-link`: isolate it, alive. `restore` brings it back."""
    node, _ = wait_for_single_holder(pair, 10)
    request = probe_request(pair)
    endpoint = pair.endpoint

    def inject() -> None:
        pair.lab.fault(node, "cut-link")
        if fault == "kill":
            pair.lab.fault(node, "kill")

    async def drill() -> tuple[float, float, int]:
        if not await probe(endpoint, request, timeout_s=30):
            raise TierkitError(f"failover: no answer through {endpoint.url} before the fault; is the tier up?")
        t0 = time.perf_counter()
        injecting = asyncio.create_task(asyncio.to_thread(inject))
        sent_after: float | None = None
        failed = 0
        pending: set[asyncio.Task[tuple[float, bool]]] = set()

        async def timed(started: float) -> tuple[float, bool]:
            return started, await probe(endpoint, request)

        try:
            while time.perf_counter() - t0 < timeout_s:
                if sent_after is None and injecting.done():
                    injecting.result()  # a failed injection raises here
                    sent_after = time.perf_counter()
                pending.add(asyncio.create_task(timed(time.perf_counter())))
                done, pending = await asyncio.wait(pending, timeout=PROBE_INTERVAL_S)
                for task in done:
                    started, ok = task.result()
                    if sent_after is None or started < sent_after:
                        continue  # sent before the fault had landed
                    if ok:
                        return time.perf_counter() - t0, sent_after - t0, failed
                    failed += 1
            raise TierkitError(f"failover: nothing answered through {endpoint.url} for {timeout_s:g} s after the {fault}")
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await asyncio.gather(injecting, return_exceptions=True)

    takeover_s, fault_s, failed = netns.call_in(pair.lab.netns, lambda: asyncio.run(drill()))
    survivors = [n for n in holders(pair) if n != node]
    return TakedownOutcome(node=node, fault=fault, takeover_s=takeover_s,
                           new_holder=survivors[0] if survivors else "", probes_failed=failed, fault_s=fault_s)


# ---------------------------------------------------------------------------------------------
# Drill 5: a long run at full load, for false alarms.


@dataclass
class SoakOutcome:
    holder: str  # the VIP holder when the run started
    duration_s: float
    concurrency: int
    requests: int
    failed: int
    output_tok_s: float
    moves: int  # transitions to MASTER keepalived logged on either node during the run (0: the VIP never moved)
    faults: int  # transitions to FAULT (the health script failed `fall` times in a row)
    transitions: list[str]  # those log lines, per node
    holders_seen: list[tuple[str, ...]]  # the distinct holder sets polled every 0.1 s, in order
    errors: dict[str, int] = field(default_factory=dict)


def parse_transitions(log: str) -> list[str]:
    """The VRRP states the notify script logged ("vrrp INSTANCE <name> is now <STATE> ..."), in order."""
    return [line.split(" is now ", 1)[1].split()[0] for line in log.splitlines() if " is now " in line]


def transitions_since(pair: Pair, node: str, since_epoch_s: float) -> list[str]:
    """The states `node`'s keepalived entered since the given time (its notify script's log lines)."""
    return parse_transitions(pair.ssh(node, f"journalctl -t {FAILOVER_LOG_TAG} --no-pager -o cat --since @{since_epoch_s:.0f}"))


def soak(pair: Pair, *, duration_s: float, concurrency: int = 8, input_len: int = 64, output_len: int = 64) -> SoakOutcome:
    """A smoke run of `duration_s` through the VIP at `concurrency` (the failover stack's smoke
    load keeps every core of the lab busy), counting the VIP moves and FAULTs it caused: none is
    the promise, since nothing failed. Moves come from keepalived's own log (a move shorter than
    the poll still counts), the polled holders show where the VIP was."""
    holder, _ = wait_for_single_holder(pair, 10)
    settings = smoke_settings(pair, concurrency=concurrency, duration_s=duration_s, input_len=input_len,
                              output_len=output_len)
    since = time.time() - 1  # the journal's --since has whole seconds
    results: list[RequestResult] = []
    with holders_watched(pair) as seen:
        report = netns.call_in(pair.lab.netns, lambda: asyncio.run(run_smoke(settings, on_result=results.append)))
    logged = {node: transitions_since(pair, node, since) for node in pair.nodes}
    states = [state for node_states in logged.values() for state in node_states]
    failed = [r for r in results if not r.success]
    return SoakOutcome(
        holder=holder, duration_s=duration_s, concurrency=concurrency,
        requests=int(report.metrics["completed"] + report.metrics["failed"]), failed=int(report.metrics["failed"]),
        output_tok_s=report.metrics["output_throughput"], moves=states.count("MASTER"), faults=states.count("FAULT"),
        transitions=[f"{node}: {state}" for node, node_states in logged.items() for state in node_states],
        holders_seen=seen, errors=dict(Counter(r.error for r in failed if r.error)),
    )


def partition(pair: Pair, node: str) -> None:
    """Split the node off the switch with its carrier up: the switch's port for it leaves the
    bridge (a failed switch path, not a pulled cable), so keepalived on the node sees a healthy
    interface and no adverts, and a VIP holder keeps its VIP: both nodes hold it (split brain)."""
    port = network.port(pair.lab.machine(node).index)
    netns.ip("link", "set", port, "nomaster", netns=pair.lab.netns)


def heal(pair: Pair, node: str) -> None:
    """Put the node's switch port back on the bridge (undoes `partition`)."""
    port = network.port(pair.lab.machine(node).index)
    netns.ip("link", "set", port, "master", network.BRIDGE, netns=pair.lab.netns)


def restore(pair: Pair, node: str) -> None:
    """Plug the node back in and boot it if it is down (waits for SSH)."""
    pair.lab.fault(node, "restore")


# ---------------------------------------------------------------------------------------------
# Drill 6: a rolling restart under load.


@dataclass
class RollingRestartOutcome:
    requests: int  # streamed completions sent through the VIP while configure ran
    failed: int  # of them, the ones without a whole stream (the tier promises 0)
    restart_s: float  # the configure run that restarted the nodes, one at a time
    restarted: list[str]  # nodes whose vLLM runs a new process afterwards
    errors: dict[str, int] = field(default_factory=dict)


class _Stream(_Status):
    """A streamed completion's status and body."""

    __slots__ = ("body",)

    def __init__(self) -> None:
        super().__init__()
        self.body = bytearray()

    def on_body(self, data: bytes, now: float) -> None:
        self.body += data


def stream_request(pair: Pair, output_len: int) -> bytes:
    body = json.dumps({"model": pair.model, "prompt": "Count to one hundred:", "max_tokens": output_len,
                       "ignore_eos": True, "stream": True}).encode()
    return build_request("POST", pair.endpoint, "/v1/completions", body, pair.api_key)


async def completion(endpoint: Endpoint, request: bytes, timeout_s: float) -> str | None:
    """One streamed completion on a fresh connection: None when it ran to `data: [DONE]`, else why not
    (a 200 head followed by no tokens, the loss a planned stop used to cause, is a failure)."""
    sink = _Stream()
    reason = await exchange_once(endpoint, request, sink, timeout_s)
    if reason is not None:
        return reason
    if sink.status != 200:
        return f"HTTP {sink.status}"
    if b'"error"' in sink.body or b"data: [DONE]" not in sink.body:
        return "stream ended without [DONE]"
    return None


async def steady_load(endpoint: Endpoint, request: bytes, concurrency: int, stop: threading.Event,
                      started: threading.Event, timeout_s: float) -> list[tuple[float, str | None]]:
    """`concurrency` clients sending completions back to back until `stop`: (sent at, why it failed)."""
    results: list[tuple[float, str | None]] = []

    async def client() -> None:
        while not stop.is_set():
            sent = time.perf_counter()
            results.append((sent, await completion(endpoint, request, timeout_s)))
            started.set()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results


def main_pids(pair: Pair) -> dict[str, str]:
    """Each node's vLLM main process id (0: not running)."""
    return {n: pair.ssh(n, f"systemctl show --property=MainPID --value {VLLM_SERVICE}").strip() for n in pair.nodes}


def rolling_restart(pair: Pair, workdir: Path, spec: TierSpec, *, stack: str = "failover", playbook: str = "vllm",
                    concurrency: int = 4, output_len: int = 32, timeout_s: float = 120) -> RollingRestartOutcome:
    """Run `playbook` with `spec` (a vLLM setting changed, so every node's vLLM restarts) while
    `concurrency` clients in the lab's switch stream completions through the VIP back to back,
    from before the run starts until after it ends."""
    before = main_pids(pair)
    stop, started = threading.Event(), threading.Event()
    endpoint, request = pair.endpoint, stream_request(pair, output_len)
    box: dict[str, Any] = {}

    def load() -> None:
        try:
            box["results"] = netns.call_in(pair.lab.netns, lambda: asyncio.run(
                steady_load(endpoint, request, concurrency, stop, started, timeout_s)))
        except BaseException as exc:  # reported below, in the caller's thread
            box["error"] = exc
            started.set()

    loader = threading.Thread(target=load)
    loader.start()
    try:
        if not started.wait(timeout_s) or "error" in box:
            raise TierkitError(f"failover: no completion through {endpoint.url} before the rolling restart")
        t0 = time.perf_counter()
        result = configure(spec, pair.lab.hosts, StackPaths(workdir, stack), playbook, quiet=True)
        restart_s = time.perf_counter() - t0
        time.sleep(2)  # clients keep sending after the run: the last node serves and both pools hold it
    finally:
        stop.set()
        loader.join()
    if "error" in box:
        raise box["error"]
    if not result.ok:
        raise TierkitError(*(f"{playbook}: {f.host}: {f.task}: {f.message}" for f in result.failures))
    after = main_pids(pair)
    results = box["results"]
    failed = [why for _, why in results if why is not None]
    return RollingRestartOutcome(requests=len(results), failed=len(failed), restart_s=restart_s,
                                 restarted=[n for n in pair.nodes if after[n] not in (before[n], "0")],
                                 errors=dict(Counter(failed)))
