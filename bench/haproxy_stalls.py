"""HAProxy stalls bench: short completions, a new connection each, timed to the first byte.

On a lab pair serving the failover stack, `--loops` parallel loops of `--requests` completions
each (`max_tokens` 2, a fresh TCP connection per request, as `curl` in a shell loop sends them)
go, one target after the other, to:
  - each node's vLLM on its own (from the lab's switch, where clients live);
  - every vLLM at once, loop i to node i mod 2: the load HAProxy spreads, without HAProxy;
  - HAProxy on the VIP holder at 127.0.0.1:<port> (from inside the holder's network namespace);
  - the VIP (from the lab's switch).
Per target: requests, failures (nothing within `--timeout`), how many first bytes came after
`--slow` seconds, median and max time to first byte, the slowest connect; through HAProxy also
its own maxima per vLLM over the run: queue wait, connect and response time, and retries
(docs/failover.md#stalls-through-haproxy).

    .venv/bin/python bench/haproxy_stalls.py                       # lab `tkfo-bench`, deployed if needed
    .venv/bin/python bench/haproxy_stalls.py --lab ha --no-deploy  # a pair `tierkit up --stack failover` made
Needs root (labs, network namespaces). The lab is left up; `tierkit lab down NAME` removes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from tierkit.console import console, err_console
from tierkit.errors import TierkitError
from tierkit.lab.drills import Pair, add_pair_arguments, bench_pair
from tierkit.lab.stalls import StallOutcome, short_completions, targets

KINDS = ("vllm", "haproxy", "vip")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_pair_arguments(p)
    p.add_argument("--loops", type=int, default=4, help="parallel loops (default: 4)")
    p.add_argument("--requests", type=int, default=40, help="requests per loop (default: 40)")
    p.add_argument("--slow", type=float, default=0.5, help="a first byte later than this many seconds is a stall (default: 0.5)")
    p.add_argument("--timeout", type=float, default=3.0, help="client timeout per request, seconds (default: 3)")
    p.add_argument("--only", choices=KINDS, action="append",
                   help="measure only these targets: vllm (each node, then all at once), haproxy, vip (repeatable; default: all)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.loops < 1 or args.requests < 1 or not 0 < args.slow < args.timeout:
        p.error("--loops and --requests must be at least 1, and 0 < --slow < --timeout")
    return args


def measure(pair: Pair, args: argparse.Namespace) -> list[StallOutcome]:
    found = targets(pair)
    kinds = args.only or KINDS
    chosen = [t for key, t in found.items() if key.split()[0] in kinds]
    return [short_completions(pair, t, loops=args.loops, requests=args.requests, slow_s=args.slow,
                              timeout_s=args.timeout) for t in chosen]


def show(results: list[StallOutcome], args: argparse.Namespace) -> None:
    console.print(f"{args.loops} loops x {args.requests} completions (max_tokens 2), a new connection each; "
                  f"time to first byte (TTFB); a stall: over {args.slow:g} s; a failure: nothing within {args.timeout:g} s",
                  soft_wrap=True)
    for r in results:
        slow = f" ({' '.join(f'{t:.2f}' for t in r.slow_ttfb_s)})" if r.slow_ttfb_s else ""
        failed = f", {r.failed} failed ({', '.join(f'{n} x {e}' for e, n in r.errors.items())})" if r.failed else ""
        console.print(f"{r.target}: {r.requests} requests, {r.slow} over {args.slow:g} s{slow}, median {r.median_s:.3f} s, "
                      f"max {r.max_s:.3f} s, slowest connect {r.max_connect_s:.3f} s{failed}", soft_wrap=True)
        for name, s in r.haproxy.items():
            console.print(f"    HAProxy -> {name}: max queue {s.qtime_max} ms, max connect {s.ctime_max} ms, "
                          f"max response {s.rtime_max} ms, retries {s.retries}, redispatches {s.redispatches}", soft_wrap=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        results = measure(bench_pair(args.lab, args.stack, as_is=args.no_deploy), args)
    except TierkitError as exc:
        for problem in exc.args:
            err_console.print(f"error: {problem}")
        return 2
    if args.json:
        console.print_json(json.dumps([asdict(r) for r in results]))
    else:
        show(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
