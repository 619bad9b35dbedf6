#!/usr/bin/python3
"""Planned stops of a failover node's vLLM that lose no request (installed by roles/failover).

Every node's HAProxy balances over both nodes' vLLMs, so a node leaving the pool must tell both
HAProxies, its own and its peer's. Each HAProxy polls this node's agent (`agent-check`, HAProxy's
configuration manual, section 5.2) and the agent's one-line answer sets the server's state:

  serve   the agent: answers every connection with "drain" while the drain flag exists, "ready"
          otherwise, and notes which address (which HAProxy) it told "drain";
  drain   vLLM's ExecStop: raise the drain flag, wait until every HAProxy was told (bounded),
          then until vLLM has no request running or waiting (its /metrics; bounded), and return,
          after which systemd sends vLLM SIGTERM. Never fails: a stop must go on;
  ready   vLLM's ExecStartPre: lower the flag (HAProxy's health checks still keep the node out
          of the pool until it completes requests again).

Python's standard library only: it runs with the host's /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

FLAG = "drain"
IN_FLIGHT_METRICS = ("vllm:num_requests_running", "vllm:num_requests_waiting")
POLL_S = 0.1


def say(text: str) -> None:
    print(f"tierkit-drain: {text}", file=sys.stderr, flush=True)


def told_note(notes: Path, address: str) -> Path:
    return notes / f"told-{address}"


# --------------------------------------------------------------------------------------- serve


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flag: Path, notes: Path) -> None:
    draining = flag.exists()
    try:
        writer.write(b"drain\n" if draining else b"ready\n")
        await writer.drain()
    except OSError:
        return
    finally:
        writer.close()
    peer = writer.get_extra_info("peername")
    if draining and peer:
        try:
            address = str(ipaddress.ip_address(peer[0]))
            told_note(notes, address).touch()
        except (ValueError, OSError) as exc:
            say(f"cannot note that {peer[0]} was told to drain: {exc}")


async def serve(address: str, port: int, flag: Path, notes: Path) -> None:
    server = await asyncio.start_server(lambda r, w: answer(r, w, flag, notes), address, port)
    say(f"agent on {address}:{port}: 'drain' while {flag} exists, else 'ready'")
    async with server:
        await server.serve_forever()


# --------------------------------------------------------------------------------------- drain


def in_flight(metrics_url: str) -> int | None:
    """Requests vLLM runs or queues (its Prometheus gauges); None when it does not answer."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:
            text = response.read().decode(errors="replace")
    except (OSError, urllib.error.URLError):
        return None
    total = 0.0
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in IN_FLIGHT_METRICS:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def raise_flag(state: Path, notes: Path, balancers: list[str]) -> None:
    state.mkdir(mode=0o755, parents=True, exist_ok=True)
    for address in balancers:
        try:
            told_note(notes, address).unlink()
        except FileNotFoundError:
            pass
    temp = state / f".{FLAG}.{os.getpid()}"
    temp.write_text(f"{time.time():.3f}\n")
    os.replace(temp, state / FLAG)  # atomic: the agent sees the flag whole or not at all


def drain(state: Path, notes: Path, balancers: list[str], metrics_url: str, notice_timeout: float,
          grace: float, timeout: float) -> int:
    started = time.monotonic()
    raise_flag(state, notes, balancers)
    if not os.environ.get("MAINPID"):
        say("vLLM is not running: the flag is up, nothing to wait for")
        return 0
    deadline = started + timeout
    notice_by = min(started + notice_timeout, deadline)
    waiting = set(balancers)
    while waiting and time.monotonic() < notice_by:
        waiting = {a for a in waiting if not told_note(notes, a).exists()}
        time.sleep(POLL_S)
    told = sorted(set(balancers) - waiting)
    say(f"told to drain after {time.monotonic() - started:.1f} s: {', '.join(told) or 'no load balancer'}"
        + (f"; not asking (down or unreachable): {', '.join(sorted(waiting))}" if waiting else ""))
    time.sleep(max(0.0, min(grace, deadline - time.monotonic())))  # requests sent just before reach the engine
    while True:
        left = in_flight(metrics_url)
        if left is None:
            say("vLLM's metrics do not answer: nothing left to wait for")
            return 0
        if left == 0:
            say(f"no request in flight after {time.monotonic() - started:.1f} s; stopping")
            return 0
        if time.monotonic() >= deadline:
            say(f"{left} request(s) still in flight after {timeout:g} s (the drain timeout); stopping anyway")
            return 0
        time.sleep(POLL_S * 2)


def ready(state: Path) -> int:
    try:
        (state / FLAG).unlink()
    except FileNotFoundError:
        pass
    return 0


# ----------------------------------------------------------------------------------------- cli


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tierkit-drain", description=__doc__.split("\n\n")[0])
    p.add_argument("--state-dir", type=Path, required=True, help="where the drain flag lives (root's)")
    p.add_argument("--notes-dir", type=Path, required=True, help="where the agent notes whom it told to drain")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="answer HAProxy's agent checks")
    s.add_argument("--address", required=True)
    s.add_argument("--port", type=int, required=True)
    d = sub.add_parser("drain", help="vLLM's ExecStop: drain from every HAProxy, wait for in-flight requests")
    d.add_argument("--balancer", action="append", default=[], help="address of a node whose HAProxy must be told")
    d.add_argument("--metrics", required=True, help="vLLM's /metrics URL")
    d.add_argument("--notice-timeout", type=float, required=True, help="seconds to wait for every HAProxy to be told")
    d.add_argument("--grace", type=float, default=1.0, help="seconds for requests sent just before to reach the engine")
    d.add_argument("--timeout", type=float, required=True, help="seconds the whole drain may take")
    sub.add_parser("ready", help="vLLM's ExecStartPre: lower the drain flag")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.command == "serve":
        asyncio.run(serve(args.address, args.port, args.state_dir / FLAG, args.notes_dir))
        return 0
    if args.command == "drain":
        return drain(args.state_dir, args.notes_dir, args.balancer, args.metrics, args.notice_timeout,
                     args.grace, args.timeout)
    return ready(args.state_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
