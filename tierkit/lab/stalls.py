"""The stall drill of the failover tier: short completions, each on a new connection, timed to
the first byte, straight to the vLLMs or through HAProxy, with HAProxy's own timers beside them.

`loops` clients run side by side, each sending `requests` two-token completions one after the
other on a fresh TCP connection (`Connection: close`, as `curl` in a shell loop sends them). A
target is where the clients live (a network namespace) and where they send: each node's vLLM,
every vLLM at once (client i to node i mod n, the load HAProxy spreads, without HAProxy), the
VIP holder's HAProxy on 127.0.0.1, or the VIP from the lab's switch. Through HAProxy, the drill
clears the holder's maxima first (`clear counters` on its admin socket) and reads them after:
per vLLM the longest queue wait, connect and response times HAProxy measured, and its retries
(docs/failover.md#stalls-through-haproxy says what each means). Like every drill it returns
figures; tests/lab/test_failover.py judges them and bench/haproxy_stalls.py prints them.
"""

from __future__ import annotations

import json
import shlex
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field

from tierkit import netns
from tierkit.lab import network
from tierkit.lab.drills import Pair, ServerStats, backend_stats, wait_for_single_holder

# roles/failover/templates/haproxy.cfg.j2 (`stats socket ... level admin`); a unit test keeps it in step.
HAPROXY_ADMIN_SOCKET = "/run/haproxy/admin.sock"
MAX_TOKENS = 2


@dataclass(frozen=True)
class Target:
    name: str
    netns: str  # where the clients run
    endpoints: tuple[tuple[str, int], ...]  # client i sends to endpoints[i % len(endpoints)]
    haproxy_on: str | None = None  # the node whose HAProxy the requests pass (None: straight to vLLM)


@dataclass(frozen=True)
class Sample:
    connect_s: float  # connect() called -> connection established
    ttfb_s: float | None  # connect() called -> first byte of the answer; None: failed
    error: str = ""


@dataclass
class StallOutcome:
    target: str
    requests: int
    failed: int  # no 200 within the client timeout
    slow: int  # first byte later than slow_s
    slow_s: float
    median_s: float
    max_s: float
    max_connect_s: float
    slow_ttfb_s: list[float]
    errors: dict[str, int] = field(default_factory=dict)
    # Through HAProxy: per vLLM, HAProxy's maxima over the run (ms) and retries.
    haproxy: dict[str, ServerStats] = field(default_factory=dict)


def targets(pair: Pair) -> dict[str, Target]:
    """Every target by kind: "vllm <node>" for each node, "vllm", "haproxy", "vip"."""
    holder, _ = wait_for_single_holder(pair, 10)
    vllms = tuple((pair.lab.host(n).address, pair.backend_port) for n in pair.nodes)
    found = {f"vllm {n}": Target(f"vllm {n}", pair.lab.netns, (end,)) for n, end in zip(pair.nodes, vllms, strict=True)}
    found["vllm"] = Target("vllm, every node at once", pair.lab.netns, vllms)
    found["haproxy"] = Target(f"haproxy on {holder} (127.0.0.1)", network.host_netns(holder),
                              (("127.0.0.1", pair.port),), haproxy_on=holder)
    found["vip"] = Target(f"VIP {pair.vip}", pair.lab.netns, ((pair.vip, pair.port),), haproxy_on=holder)
    return found


def completion(pair: Pair, address: str, port: int) -> bytes:
    """A non-streamed two-token completion on a connection that closes after it."""
    body = json.dumps({"model": pair.model, "prompt": "Hello", "max_tokens": MAX_TOKENS}).encode()
    auth = f"Authorization: Bearer {pair.api_key.get_secret_value()}\r\n" if pair.api_key else ""
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: {address}:{port}\r\nAccept: */*\r\n"
            f"Content-Type: application/json\r\n{auth}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def one(address: str, port: int, request: bytes, timeout_s: float) -> Sample:
    """One request on a new connection: connect and first-byte times, then the whole answer."""
    start = time.perf_counter()
    connected = start
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as sock:
            connected = time.perf_counter()
            sock.sendall(request)
            data = sock.recv(65536)
            ttfb = time.perf_counter() - start
            while chunk := sock.recv(65536):
                data += chunk
    except OSError as exc:
        return Sample(connected - start, None, type(exc).__name__)
    status = data.split(b" ", 2)[1:2]
    if status != [b"200"]:
        return Sample(connected - start, None, f"HTTP {status[0].decode(errors='replace') if status else '?'}")
    return Sample(connected - start, ttfb)


def run_loops(pair: Pair, target: Target, loops: int, requests: int, timeout_s: float) -> list[Sample]:
    """`loops` client threads in the target's namespace, each sending `requests` one by one."""
    samples: list[Sample] = []
    lock = threading.Lock()

    def loop(address: str, port: int) -> None:
        request = completion(pair, address, port)
        for _ in range(requests):
            sample = one(address, port, request, timeout_s)
            with lock:
                samples.append(sample)

    def clients() -> None:
        ends = target.endpoints
        threads = [threading.Thread(target=loop, args=ends[i % len(ends)]) for i in range(loops)]  # same namespace
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    netns.call_in(target.netns, clients)
    return samples


def summarize(target: str, samples: list[Sample], slow_s: float) -> StallOutcome:
    ok = sorted(s.ttfb_s for s in samples if s.ttfb_s is not None)
    slow = [t for t in ok if t > slow_s]
    errors: dict[str, int] = {}
    for s in samples:
        if s.error:
            errors[s.error] = errors.get(s.error, 0) + 1
    return StallOutcome(
        target=target, requests=len(samples), failed=len(samples) - len(ok), slow=len(slow), slow_s=slow_s,
        median_s=statistics.median(ok) if ok else float("nan"), max_s=ok[-1] if ok else float("nan"),
        max_connect_s=max((s.connect_s for s in samples), default=0.0), slow_ttfb_s=[round(t, 3) for t in slow],
        errors=errors,
    )


def clear_counters(pair: Pair, node: str) -> None:
    """Reset the maxima of `node`'s HAProxy (queue, connect, response times) through its admin
    socket (the hosts have Python for Ansible; no socat needed)."""
    script = ("import socket; s = socket.socket(socket.AF_UNIX); "
              f"s.connect({HAPROXY_ADMIN_SOCKET!r}); s.sendall(b'clear counters\\n'); s.recv(4096)")
    pair.ssh(node, shlex.join(["python3", "-c", script]))


def short_completions(pair: Pair, target: Target, *, loops: int = 4, requests: int = 40, slow_s: float = 0.5,
                      timeout_s: float = 3.0) -> StallOutcome:
    """The loops against `target`; through HAProxy, with the holder's timers over the run."""
    if target.haproxy_on:
        clear_counters(pair, target.haproxy_on)
    outcome = summarize(target.name, run_loops(pair, target, loops, requests, timeout_s), slow_s)
    if target.haproxy_on:
        outcome.haproxy = backend_stats(pair, target.haproxy_on)
    return outcome
