"""`tierkit up --stack multi-server` end to end on the lab: one model split over two lab hosts.

vLLM's CPU build runs PP=2 across them (a stage per host, gloo over the lab's switch, each host its
own /dev/shm), the head serves the API and the smoke gate runs through it. One deployment for the
module, the tests in order, each leaving it as the next expects:

1. cold `up` deploys and passes the smoke gate; the worker runs headless, joined to the head;
2. a second `up --refresh` runs every step again and changes nothing (warm time);
3. the network gate: a throttled cable on the worker makes `up --refresh` refuse with one line
   naming the link, its rate and the floor; the cable restored, nothing else changed;
4. the drill: the worker host is killed; the head stops answering within a bound (no silent
   hang); `up --refresh` boots it again, the group rejoins and the smoke gate passes;
5. `down` leaves nothing.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tierkit import netns
from up_support import CHANGED_TASK, Up, deployed, down_leaves_nothing, on_host, report_timing, tierkit, up

pytestmark = pytest.mark.lab

STACK = "multi-server"
THROTTLE = "100mbit"  # far under the stack's 1 Gbps floor
DOWN_WITHIN_S = 60.0  # the head's API must stop answering within this after the worker dies
GATE_LINE = re.compile(r"network gate: link (\S+) -> (\S+) measured ([0-9.]+) Gbps, under the floor of ([0-9.]+) Gbps")


@pytest.fixture(scope="module")
def first() -> Iterator[Up]:
    yield from deployed(STACK)


def flat(log: str) -> str:
    """The log as one line: each command's lines without their `name |` prefix (long lines wrap)."""
    return " ".join(line.split(" | ", 1)[-1].strip() for line in log.splitlines())


def hosts(up_: Up) -> tuple[dict, dict]:
    head, worker = up_.result["outputs"]["hosts"]
    return head, worker


def health(head: dict) -> str:
    """The head's /health status code, or the curl error (000: no answer) within 3 s."""
    argv = netns.wrap(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                       f"http://{head['address']}:8000/health"], head["netns"])
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()


def test_up_from_nothing_splits_the_model_over_two_hosts(first: Up) -> None:
    assert first.proc.returncode == 0, first.log[-4000:]
    outputs = first.result["outputs"]
    assert outputs["plan"]["pipeline_parallel"] == 2 and outputs["plan"]["tier"] == "multi-server"
    assert outputs["smoke"]["passed"] is True and outputs["smoke"]["failed"] == 0
    assert any("ran TP=1 PP=2 over gloo across 2 lab hosts" in n for n in outputs["notes"]), outputs["notes"]
    assert re.search(r"Check the link against the floor, \S+ -> \S+ [0-9.]+ Gbps, floor 1.0", flat(first.log)), "the gate ran"
    head, worker = hosts(first)
    unit = on_host(worker["name"], "systemctl show -p ExecStart --value vllm.service")
    assert "--headless" in unit and f"--master-addr {head['address']}" in unit and "--node-rank 1" in unit
    assert "--headless" not in on_host(head["name"], "systemctl show -p ExecStart --value vllm.service")
    # the stage on the worker talks to the head over the lab's network
    assert on_host(worker["name"], f"ss -Htn state established src {worker['address']} dst {head['address']}")
    assert on_host(worker["name"], "systemctl is-active vllm-group-watch.service") == "active"
    report_timing(STACK, "cold (no lab; image, wheelhouse and model cached)", first.seconds)


def test_second_up_changes_nothing(first: Up) -> None:
    head, worker = hosts(first)
    pids = {h["name"]: on_host(h["name"], "systemctl show -p MainPID --value vllm.service") for h in (head, worker)}
    second = up(STACK, None, "--refresh")  # without it the record stands and nothing runs
    assert second.proc.returncode == 0, second.log[-3000:]
    assert "+ configure: unchanged; --refresh runs it again" in second.log
    assert not CHANGED_TASK.findall(second.log), "configure's second run changed something"
    assert {h["name"]: on_host(h["name"], "systemctl show -p MainPID --value vllm.service") for h in (head, worker)} == pids
    assert second.result["outputs"]["smoke"]["passed"] is True
    report_timing(STACK, "warm (second up, --refresh)", second.seconds)


def test_throttled_link_is_refused_by_the_network_gate(first: Up) -> None:
    head, worker = hosts(first)
    throttle = tierkit("lab", "fault", worker["name"], "--throttle", THROTTLE, timeout=60)
    assert throttle.returncode == 0, throttle.stderr
    try:
        refused = up(STACK, None, "--refresh")
    finally:
        restore = tierkit("lab", "fault", worker["name"], "--restore", timeout=120)
    assert restore.returncode == 0, restore.stderr
    assert refused.proc.returncode != 0
    found = GATE_LINE.search(flat(refused.log))
    assert found, refused.log[-3000:]
    assert found.group(1, 2) == (head["name"], worker["name"])
    assert float(found.group(3)) < 0.2 and found.group(4) == "1.0"
    assert health(head) == "200", "the refused deploy left the serving group alone"


def test_killed_worker_stops_the_endpoint_and_up_restores_it(first: Up) -> None:
    head, worker = hosts(first)
    assert health(head) == "200"
    kill = tierkit("lab", "fault", worker["name"], "--kill", timeout=60)
    assert kill.returncode == 0, kill.stderr
    killed = time.monotonic()
    while health(head) == "200":
        assert time.monotonic() - killed < DOWN_WITHIN_S, f"the head still answers {DOWN_WITHIN_S:.0f} s after the kill"
        time.sleep(1)
    down_after = time.monotonic() - killed
    print(f"head stopped answering {down_after:.1f} s after the worker was killed")
    again = up(STACK, None, "--refresh")
    assert again.proc.returncode == 0, again.log[-4000:]
    assert f"booted {worker['name']} again" in again.log
    assert again.result["outputs"]["smoke"]["passed"] is True
    assert health(head) == "200"
    report_timing(STACK, f"restore after a worker kill (head down {down_after:.1f} s after the kill)", again.seconds)


def test_down_leaves_nothing(first: Up, find_leftovers: Callable[[str], list[str]]) -> None:
    down_leaves_nothing(STACK, find_leftovers)
