"""Failover bench: repeat the failover tier's four drills and print the figures.

Each round, on a lab pair serving the failover stack:
  0. The engine of the VIP holder's vLLM hangs (its engine core stopped with SIGSTOP; /health
     still 200) during a smoke run through the VIP: the time until both HAProxies have it out
     of the pool, and the failed requests by when they started (before it left the pool: sent
     to it while hung; after: new). Then the engine resumes (SIGCONT) and rejoins.
  1. vLLM stops on the VIP holder during a smoke run through the VIP; failed requests are
     counted by when they started (before the stop, while stopping, after it had stopped); then
     vLLM starts again and the round waits until HAProxy has it back.
  2. A rolling restart: the vllm playbook runs with serving.max_num_seqs changed (one more, or
     back) while four clients stream completions through the VIP back to back; both nodes
     restart one at a time, each drained from both HAProxies first: the requests, the failed
     ones (the tier promises 0) and the restart's duration (the playbook run).
  3. The VIP holder goes down (`kill`: SIGKILL and cable pulled, or `cut-link`); takeover is
     the time from the fault to the first success through the VIP; the node then comes back
     and the round waits until it serves again.
At the end: hung-engine time out of the pool and takeover, min / median / max, and the
failed-request counts.

    .venv/bin/python bench/failover.py                  # the lab `tkfo-bench`, deployed if needed
    .venv/bin/python bench/failover.py --lab ha --no-deploy --workdir .   # a pair `tierkit up --stack failover` made
Needs root (labs, network namespaces). The lab is left up; `tierkit lab down NAME` removes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from rich.table import Table

from tierkit.console import console, err_console
from tierkit.errors import TierkitError
from tierkit.lab.drills import (
    HungEngineOutcome, Pair, RollingRestartOutcome, StopVllmOutcome, TakedownOutcome, deploy, hang_engine, lab_spec,
    restore, rolling_restart, start_vllm, stop_vllm, take_down, wait_for_single_holder, wait_until_up,
)
from tierkit.lab.lab import Lab

VLLM_START_TIMEOUT_S = 900


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lab", default="tkfo-bench", help="lab name (default: tkfo-bench)")
    p.add_argument("--stack", default="failover", help="stack whose spec the pair serves (default: failover)")
    p.add_argument("--no-deploy", action="store_true", help="use the lab as it is; do not run site.yml")
    p.add_argument("--rounds", type=int, default=5, help="rounds of every drill (default: 5)")
    p.add_argument("--fault", choices=("kill", "cut-link"), default="kill", help="how the holder goes down (default: kill)")
    p.add_argument("--concurrency", type=int, default=8, help="smoke concurrency in the hung-engine and vLLM-stop drills (default: 8)")
    p.add_argument("--duration", type=float, default=20.0, help="smoke run seconds in the hung-engine and vLLM-stop drills (default: 20)")
    p.add_argument("--workdir", type=Path, help="where the stack's inventory and VRRP password live (default: a "
                   "directory of this bench's under /tmp; `.` for a pair `tierkit up` made from this project)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args(argv)


def workdir_of(args: argparse.Namespace) -> Path:
    """The stack's files (inventory, VRRP password): the rolling restart re-runs a playbook with them."""
    workdir = args.workdir or Path(tempfile.gettempdir()) / f"tierkit-bench-failover-{args.lab}"
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def pair_for(args: argparse.Namespace) -> Pair:
    if args.no_deploy:
        lab = Lab.get(args.lab)
        return Pair.of(lab, lab_spec(lab.name, lab.subnet, args.stack))
    err_console.print(f"deploying the {args.stack} stack on lab {args.lab} (minutes when cold)")
    return deploy(args.lab, workdir_of(args), args.stack, playbooks=("vllm", "failover"))


def roll(pair: Pair, args: argparse.Namespace, n: int) -> RollingRestartOutcome:
    """The rolling-restart drill, max_num_seqs one more on odd rounds and back on even ones."""
    spec = lab_spec(pair.lab.name, pair.lab.subnet, args.stack)
    seqs = spec.serving.max_num_seqs + n % 2
    changed = spec.model_copy(update={"serving": spec.serving.model_copy(update={"max_num_seqs": seqs})})
    return rolling_restart(pair, workdir_of(args), changed, stack=args.stack)


def round_trip(pair: Pair, args: argparse.Namespace, n: int
               ) -> tuple[HungEngineOutcome, StopVllmOutcome, RollingRestartOutcome, TakedownOutcome]:
    holder, _ = wait_for_single_holder(pair, 10)
    hung = hang_engine(pair, holder, concurrency=args.concurrency, duration_s=args.duration)
    err_console.print(f"round {n}: engine hung on {holder}: out of the pool after {hung.out_of_pool_s:.2f} s; "
                      f"{hung.failed_before} sent before and {hung.failed_after} after of {hung.requests} failed "
                      f"{hung.errors or ''}")
    stopped = stop_vllm(pair, holder, concurrency=args.concurrency, duration_s=args.duration)
    err_console.print(f"round {n}: vLLM stopped on {holder}: {stopped.failed_before} in flight and "
                      f"{stopped.failed_after} new of {stopped.requests} failed {stopped.errors or ''}; restarting it")
    start_vllm(pair, holder, VLLM_START_TIMEOUT_S)
    rolled = roll(pair, args, n)
    err_console.print(f"round {n}: rolling restart of {', '.join(rolled.restarted)} in {rolled.restart_s:.1f} s: "
                      f"{rolled.failed} of {rolled.requests} failed {rolled.errors or ''}")
    down = take_down(pair, args.fault)
    err_console.print(f"round {n}: {down.fault} {down.node}: {down.new_holder} answered through the VIP "
                      f"after {down.takeover_s:.2f} s; bringing {down.node} back")
    restore(pair, down.node)
    wait_until_up(pair, down.new_holder, down.node, VLLM_START_TIMEOUT_S)
    return hung, stopped, rolled, down


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def summary(hungs: list[HungEngineOutcome], stops: list[StopVllmOutcome], rolls: list[RollingRestartOutcome],
            downs: list[TakedownOutcome]) -> dict[str, object]:
    takeovers = [d.takeover_s for d in downs]
    return {
        "rounds": len(downs),
        "fault": downs[0].fault if downs else None,
        "hung_out_of_pool_s": spread([h.out_of_pool_s for h in hungs]),
        "hung_requests": [h.requests for h in hungs],
        "hung_failed_before_out_of_pool": [h.failed_before for h in hungs],
        "hung_failed_after_out_of_pool": [h.failed_after for h in hungs],
        "hung_errors": [h.errors for h in hungs],
        "takeover_s": spread(takeovers),
        "takeover_runs_s": takeovers,
        "probes_failed_before_takeover": [d.probes_failed for d in downs],
        "vllm_stop_requests": [s.requests for s in stops],
        "vllm_stop_failed_in_flight": [s.failed_before for s in stops],
        "vllm_stop_failed_new": [s.failed_after for s in stops],
        "vllm_stop_errors": [s.errors for s in stops],
        "rolling_restart_requests": [r.requests for r in rolls],
        "rolling_restart_failed": [r.failed for r in rolls],
        "rolling_restart_s": spread([r.restart_s for r in rolls]),
        "rolling_restart_errors": [r.errors for r in rolls],
        "runs": {"hung_engine": [asdict(h) for h in hungs], "vllm_stop": [asdict(s) for s in stops],
                 "rolling_restart": [asdict(r) for r in rolls], "takedown": [asdict(d) for d in downs]},
    }


def show(figures: dict[str, object], hungs: list[HungEngineOutcome], stops: list[StopVllmOutcome],
         rolls: list[RollingRestartOutcome], downs: list[TakedownOutcome]) -> None:
    table = Table(title=f"failover bench: {len(downs)} rounds, holder down by {figures['fault']}")
    for column in ("round", "hung: out of pool s", "hung: failed before", "hung: failed after (must be 0)",
                   "vLLM stop: requests", "failed in flight", "failed new (must be 0)", "rolling restart: requests",
                   "failed (must be 0)", "restart s", "takeover s", "probes failed"):
        table.add_column(column, justify="right")
    for n, (h, s, r, d) in enumerate(zip(hungs, stops, rolls, downs), 1):
        table.add_row(str(n), f"{h.out_of_pool_s:.2f}", str(h.failed_before), str(h.failed_after),
                      str(s.requests), str(s.failed_before), str(s.failed_after), str(r.requests), str(r.failed),
                      f"{r.restart_s:.1f}", f"{d.takeover_s:.2f}", str(d.probes_failed))
    console.print(table)
    o = figures["hung_out_of_pool_s"]
    console.print(f"hung engine out of the pool (SIGSTOP -> both HAProxies DOWN): min {o['min']:.2f} s, "  # type: ignore[index]
                  f"median {o['median']:.2f} s, max {o['max']:.2f} s; failed requests: "  # type: ignore[index]
                  f"{sum(h.failed_before for h in hungs)} sent before, {sum(h.failed_after for h in hungs)} after, "
                  f"of {sum(h.requests for h in hungs)}")
    t = figures["takeover_s"]
    console.print(f"takeover (fault -> first success through the VIP): min {t['min']:.2f} s, "  # type: ignore[index]
                  f"median {t['median']:.2f} s, max {t['max']:.2f} s")  # type: ignore[index]
    console.print(f"failed requests, vLLM stopped mid-run: {sum(s.failed_before for s in stops)} "
                  f"in flight, {sum(s.failed_after for s in stops)} new, of {sum(s.requests for s in stops)}")
    rr = figures["rolling_restart_s"]
    console.print(f"rolling restart under load (both nodes, one at a time): {sum(r.failed for r in rolls)} failed of "
                  f"{sum(r.requests for r in rolls)} requests; the playbook run took min {rr['min']:.1f} s, "  # type: ignore[index]
                  f"median {rr['median']:.1f} s, max {rr['max']:.1f} s")  # type: ignore[index]
    reasons = sum((Counter(s.errors) for s in stops), Counter())
    if reasons:
        console.print("why: " + ", ".join(f"{n} x {why}" for why, n in reasons.most_common()))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        pair = pair_for(args)
        hungs, stops, rolls, downs = [], [], [], []
        for n in range(1, args.rounds + 1):
            hung, stopped, rolled, down = round_trip(pair, args, n)
            hungs.append(hung)
            stops.append(stopped)
            rolls.append(rolled)
            downs.append(down)
    except TierkitError as exc:
        for problem in exc.args:
            err_console.print(f"error: {problem}")
        return 2
    figures = summary(hungs, stops, rolls, downs)
    if args.json:
        console.print_json(json.dumps(figures))
    else:
        show(figures, hungs, stops, rolls, downs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
