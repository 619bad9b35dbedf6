"""Failover bench: repeat the failover tier's fault drills and rolling restart, and print the figures.

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
  3. The VIP holder goes down (`kill`: SIGKILL and cable pulled, as a power cut; or
     `cut-link`); takeover is the time from the fault to the first success through the VIP; the
     node then comes back and the round waits until it serves again.
After the rounds, the soak: a smoke run at full load through the VIP (`--soak-minutes`, default
10; the failover stack's smoke load, concurrency 8, keeps both cores of a 2-core lab busy), and
how often the VIP moved or a node went to FAULT meanwhile (must be 0: nothing failed).
At the end: hung-engine time out of the pool, takeover and the rolling restart's duration, min /
median / max, the failed-request counts and the soak's figures. `--drills` picks the drills of
each round.

    .venv/bin/python bench/failover.py                  # the lab `tkfo-bench`, deployed if needed
    .venv/bin/python bench/failover.py --lab ha --no-deploy   # a pair `tierkit up --stack failover` made
    .venv/bin/python bench/failover.py --drills takedown      # takeover rounds and the soak only
    .venv/bin/python bench/failover.py --drills roll --soak-minutes 0   # rolling restarts only
Needs root (labs, network namespaces). The lab is left up; `tierkit lab down NAME` removes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.table import Table

from tierkit.console import console, err_console
from tierkit.errors import TierkitError
from tierkit.lab.drills import (
    HungEngineOutcome, Pair, RollingRestartOutcome, SoakOutcome, StopVllmOutcome, TakedownOutcome, add_pair_arguments,
    bench_pair, hang_engine, lab_spec, restore, rolling_restart, soak, start_vllm, stop_vllm, take_down,
    wait_for_single_holder, wait_until_up,
)

VLLM_START_TIMEOUT_S = 900
DRILLS = ("hung", "stop", "roll", "takedown")


def drill_list(text: str) -> list[str]:
    chosen = [d.strip() for d in text.split(",") if d.strip()]
    unknown = [d for d in chosen if d not in DRILLS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown) or 'nothing'}: pick drills from {', '.join(DRILLS)}, comma-separated")
    return chosen


def minutes(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 24 * 60:
        raise argparse.ArgumentTypeError(f"{text}: give minutes from 0 (no soak) to 1440")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_pair_arguments(p)
    p.add_argument("--rounds", type=int, default=5, help="rounds of the drills (default: 5)")
    p.add_argument("--fault", choices=("kill", "cut-link"), default="kill", help="how the holder goes down (default: kill)")
    p.add_argument("--concurrency", type=int, default=8, help="smoke concurrency in the hung-engine and vLLM-stop drills (default: 8)")
    p.add_argument("--duration", type=float, default=20.0, help="smoke run seconds in the hung-engine and vLLM-stop drills (default: 20)")
    p.add_argument("--drills", type=drill_list, default=list(DRILLS),
                   help=f"drills of each round, comma-separated from {', '.join(DRILLS)} (default: all)")
    p.add_argument("--soak-minutes", type=minutes, default=10.0, help="soak at full load after the rounds, minutes (default: 10; 0: none)")
    p.add_argument("--soak-concurrency", type=int, default=8, help="smoke concurrency of the soak (default: 8, the failover stack's)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args(argv)


def pair_for(args: argparse.Namespace) -> Pair:
    return bench_pair(args.lab, args.stack, as_is=args.no_deploy)


def roll(pair: Pair, args: argparse.Namespace, n: int) -> RollingRestartOutcome:
    """The rolling-restart drill, max_num_seqs one more on odd rounds and back on even ones; the
    playbook's inventory and log go to a fresh directory (tierkit rebuilds them each run)."""
    spec = lab_spec(pair.lab.name, pair.lab.subnet, args.stack)
    seqs = spec.serving.max_num_seqs + n % 2
    changed = spec.model_copy(update={"serving": spec.serving.model_copy(update={"max_num_seqs": seqs})})
    with tempfile.TemporaryDirectory(prefix="tierkit-bench-") as workdir:
        return rolling_restart(pair, Path(workdir), changed, stack=args.stack)


@dataclass
class Figures:
    hungs: list[HungEngineOutcome] = field(default_factory=list)
    stops: list[StopVllmOutcome] = field(default_factory=list)
    rolls: list[RollingRestartOutcome] = field(default_factory=list)
    downs: list[TakedownOutcome] = field(default_factory=list)
    soak: SoakOutcome | None = None


def round_trip(pair: Pair, args: argparse.Namespace, n: int, figures: Figures) -> None:
    holder, _ = wait_for_single_holder(pair, 10)
    if "hung" in args.drills:
        hung = hang_engine(pair, holder, concurrency=args.concurrency, duration_s=args.duration)
        err_console.print(f"round {n}: engine hung on {holder}: out of the pool after {hung.out_of_pool_s:.2f} s; "
                          f"{hung.failed_before} sent before and {hung.failed_after} after of {hung.requests} failed "
                          f"{hung.errors or ''}")
        figures.hungs.append(hung)
    if "stop" in args.drills:
        stopped = stop_vllm(pair, holder, concurrency=args.concurrency, duration_s=args.duration)
        err_console.print(f"round {n}: vLLM stopped on {holder}: {stopped.failed_before} in flight and "
                          f"{stopped.failed_after} new of {stopped.requests} failed {stopped.errors or ''}; restarting it")
        start_vllm(pair, holder, VLLM_START_TIMEOUT_S)
        figures.stops.append(stopped)
    if "roll" in args.drills:
        rolled = roll(pair, args, n)
        err_console.print(f"round {n}: rolling restart of {', '.join(rolled.restarted)} in {rolled.restart_s:.1f} s: "
                          f"{rolled.failed} of {rolled.requests} failed {rolled.errors or ''}")
        figures.rolls.append(rolled)
    if "takedown" in args.drills:
        down = take_down(pair, args.fault)
        err_console.print(f"round {n}: {down.fault} {down.node}: {down.new_holder} answered through the VIP "
                          f"after {down.takeover_s:.2f} s; bringing {down.node} back")
        restore(pair, down.node)
        wait_until_up(pair, down.new_holder, down.node, VLLM_START_TIMEOUT_S)
        figures.downs.append(down)


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def rounds_of(f: Figures) -> int:
    return max(len(f.hungs), len(f.stops), len(f.rolls), len(f.downs))


def summary(f: Figures) -> dict[str, object]:
    takeovers = [d.takeover_s for d in f.downs]
    return {
        "rounds": rounds_of(f),
        "fault": f.downs[0].fault if f.downs else None,
        "hung_out_of_pool_s": spread([h.out_of_pool_s for h in f.hungs]),
        "hung_requests": [h.requests for h in f.hungs],
        "hung_failed_before_out_of_pool": [h.failed_before for h in f.hungs],
        "hung_failed_after_out_of_pool": [h.failed_after for h in f.hungs],
        "hung_errors": [h.errors for h in f.hungs],
        "takeover_s": spread(takeovers),
        "takeover_runs_s": takeovers,
        "probes_failed_before_takeover": [d.probes_failed for d in f.downs],
        "vllm_stop_requests": [s.requests for s in f.stops],
        "vllm_stop_failed_in_flight": [s.failed_before for s in f.stops],
        "vllm_stop_failed_new": [s.failed_after for s in f.stops],
        "vllm_stop_errors": [s.errors for s in f.stops],
        "rolling_restart_requests": [r.requests for r in f.rolls],
        "rolling_restart_failed": [r.failed for r in f.rolls],
        "rolling_restart_s": spread([r.restart_s for r in f.rolls]),
        "rolling_restart_errors": [r.errors for r in f.rolls],
        "soak": {k: v for k, v in asdict(f.soak).items() if k != "holders_seen"} if f.soak else None,
        "runs": {"hung_engine": [asdict(h) for h in f.hungs], "vllm_stop": [asdict(s) for s in f.stops],
                 "rolling_restart": [asdict(r) for r in f.rolls], "takedown": [asdict(d) for d in f.downs],
                 "soak": asdict(f.soak) if f.soak else None},
    }


def show(figures: dict[str, object], f: Figures) -> None:
    rounds = rounds_of(f)
    table = Table(title=f"failover bench: {rounds} rounds" + (f", holder down by {figures['fault']}" if f.downs else ""))
    columns = {"hung": ("hung: out of pool s", "hung: failed before", "hung: failed after (must be 0)"),
               "stop": ("vLLM stop: requests", "failed in flight", "failed new (must be 0)"),
               "roll": ("rolling restart: requests", "failed (must be 0)", "restart s"),
               "takedown": ("takeover s", "probes failed")}
    present = [d for d, outcomes in (("hung", f.hungs), ("stop", f.stops), ("roll", f.rolls), ("takedown", f.downs))
               if outcomes]
    table.add_column("round", justify="right")
    for drill in present:
        for column in columns[drill]:
            table.add_column(column, justify="right")
    for n in range(rounds):
        row = [str(n + 1)]
        if f.hungs:
            h = f.hungs[n]
            row += [f"{h.out_of_pool_s:.2f}", str(h.failed_before), str(h.failed_after)]
        if f.stops:
            s = f.stops[n]
            row += [str(s.requests), str(s.failed_before), str(s.failed_after)]
        if f.rolls:
            r = f.rolls[n]
            row += [str(r.requests), str(r.failed), f"{r.restart_s:.1f}"]
        if f.downs:
            d = f.downs[n]
            row += [f"{d.takeover_s:.2f}", str(d.probes_failed)]
        table.add_row(*row)
    if rounds:
        console.print(table)
    if o := figures["hung_out_of_pool_s"]:
        console.print(f"hung engine out of the pool (SIGSTOP -> both HAProxies DOWN): min {o['min']:.2f} s, "  # type: ignore[index]
                      f"median {o['median']:.2f} s, max {o['max']:.2f} s; failed requests: "  # type: ignore[index]
                      f"{sum(h.failed_before for h in f.hungs)} sent before, {sum(h.failed_after for h in f.hungs)} after, "
                      f"of {sum(h.requests for h in f.hungs)}")
    if t := figures["takeover_s"]:
        console.print(f"takeover ({figures['fault']} of the holder -> first success through the VIP), {len(f.downs)} rounds: "
                      f"min {t['min']:.2f} s, median {t['median']:.2f} s, max {t['max']:.2f} s")  # type: ignore[index]
    if f.stops:
        console.print(f"failed requests, vLLM stopped mid-run: {sum(s.failed_before for s in f.stops)} "
                      f"in flight, {sum(s.failed_after for s in f.stops)} new, of {sum(s.requests for s in f.stops)}")
        reasons = sum((Counter(s.errors) for s in f.stops), Counter())
        if reasons:
            console.print("why: " + ", ".join(f"{n} x {why}" for why, n in reasons.most_common()))
    if rr := figures["rolling_restart_s"]:
        console.print(f"rolling restart under load (both nodes, one at a time): {sum(r.failed for r in f.rolls)} failed of "
                      f"{sum(r.requests for r in f.rolls)} requests; the playbook run took min {rr['min']:.1f} s, "  # type: ignore[index]
                      f"median {rr['median']:.1f} s, max {rr['max']:.1f} s")  # type: ignore[index]
    if k := f.soak:
        console.print(f"soak: {k.duration_s / 60:g} min at concurrency {k.concurrency} through the VIP: VIP moves {k.moves}, "
                      f"FAULTs {k.faults}, failed requests {k.failed} of {k.requests} ({k.output_tok_s:.1f} output tok/s)"
                      + (f"; transitions: {', '.join(k.transitions)}" if k.transitions else "")
                      + (f"; errors: {k.errors}" if k.errors else ""))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    figures = Figures()
    try:
        pair = pair_for(args)
        for n in range(1, args.rounds + 1):
            round_trip(pair, args, n, figures)
        if args.soak_minutes:
            err_console.print(f"soak: {args.soak_minutes:g} min at concurrency {args.soak_concurrency} through the VIP")
            figures.soak = soak(pair, duration_s=args.soak_minutes * 60, concurrency=args.soak_concurrency)
    except TierkitError as exc:
        for problem in exc.args:
            err_console.print(f"error: {problem}")
        return 2
    numbers = summary(figures)
    if args.json:
        console.print_json(json.dumps(numbers))
    else:
        show(numbers, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
