"""The failover drills' pure parts: their constants follow the roles, HAProxy's stats CSV is read
right, and the failover stack is placed on a lab's subnet."""

from __future__ import annotations

import threading
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import yaml

from tierkit import spec
from tierkit.lab import drills as drill
from tierkit.lab.stalls import HAPROXY_ADMIN_SOCKET
from tierkit.errors import TierkitError
from tierkit.providers.lab import host_addresses

ROOT = Path(__file__).resolve().parents[2]
FINISHED_METRICS = ROOT / "tests" / "fixtures" / "vllm" / "metrics-request-success.txt"
FIXTURE = ROOT / "tests" / "fixtures" / "haproxy" / "stats-after-vllm-stop.csv"


def test_constants_follow_the_roles() -> None:
    failover = yaml.safe_load((ROOT / "roles/failover/defaults/main.yml").read_text())
    assert drill.HAPROXY_STATS_PORT == failover["failover_stats_port"]
    assert spec.DRAIN_AGENT_PORT == failover["failover_agent_port"]
    failover_vars = yaml.safe_load((ROOT / "roles/failover/vars/main.yml").read_text())
    vllm_vars = yaml.safe_load((ROOT / "roles/vllm/vars/main.yml").read_text())
    assert drill.VLLM_SERVICE == vllm_vars["vllm_service"]
    assert failover_vars["failover_vllm_service"] == vllm_vars["vllm_service"]
    template = (ROOT / "roles/failover/templates/haproxy.cfg.j2").read_text()
    assert f"\nbackend {drill.HAPROXY_BACKEND}\n" in template
    assert f"stats socket {HAPROXY_ADMIN_SOCKET} " in template and "level admin" in template
    failover_vars = yaml.safe_load((ROOT / "roles/failover/vars/main.yml").read_text())
    assert drill.FAILOVER_LOG_TAG == failover_vars["failover_log_tag"]


def test_transitions_are_read_from_the_notify_scripts_lines() -> None:
    notify = (ROOT / "roles/failover/templates/tierkit-notify.sh.j2").read_text()
    assert '"vrrp $1 $2 is now $3 (priority' in notify  # the line the reader expects
    log = ("vrrp INSTANCE tierkit_vip is now BACKUP (priority 100, vip 10.77.40.100)\n"
           "vrrp INSTANCE tierkit_vip is now MASTER (priority 100, vip 10.77.40.100)\n"
           "some other line\n"
           "vrrp INSTANCE tierkit_vip is now FAULT (priority 100, vip 10.77.40.100)\n")
    assert drill.parse_transitions(log) == ["BACKUP", "MASTER", "FAULT"]
    assert drill.parse_transitions("") == []


def test_stats_csv_gives_each_vllm_its_counters() -> None:
    stats = drill.parse_backend_stats(FIXTURE.read_text())
    assert set(stats) == {"tkfodev-1", "tkfodev-2"}  # not BACKEND, FRONTEND, nor the stats proxy
    stopped, serving = stats["tkfodev-2"], stats["tkfodev-1"]
    assert stopped.status == "DOWN" and serving.status == "UP"
    assert serving.responses_2xx > 0 and serving.sessions >= serving.responses_2xx
    # HAProxy's maxima (ms): the queue wait while both were down, connects, responses
    assert (serving.qtime_max, serving.ctime_max, serving.rtime_max) == (2110, 3, 1220)
    assert (stopped.retries, stopped.rtime_max) == (2, 1959)


def test_served_between_counts_each_vllm_separately() -> None:
    before = drill.parse_backend_stats(FIXTURE.read_text())
    after = {
        name: drill.ServerStats(s.status, s.sessions + 5, s.responses_2xx + (5 if name == "tkfodev-1" else 0), s.retries, s.redispatches)
        for name, s in before.items()
    }
    assert drill.served_between(before, after) == {"tkfodev-1": 5, "tkfodev-2": 0}


def test_stats_parser_refuses_a_page_that_is_not_haproxys_csv() -> None:
    with pytest.raises(TierkitError, match="not HAProxy's CSV"):
        drill.parse_backend_stats("<html>503 Service Unavailable</html>")


def test_vllm_metrics_count_finished_completions_only() -> None:
    text = FINISHED_METRICS.read_text()
    assert drill.parse_vllm_finished(text) == 1090  # finished_reason="length"; the rest are 0
    aborted = text.replace('finished_reason="abort",model_name="tiny-llama"} 0.0', 'finished_reason="abort",model_name="tiny-llama"} 7.0')
    stopped = text.replace('finished_reason="stop",model_name="tiny-llama"} 0.0', 'finished_reason="stop",model_name="tiny-llama"} 5.0')
    assert aborted != text and stopped != text
    assert drill.parse_vllm_finished(aborted) == 1090  # aborted requests ended without output
    assert drill.parse_vllm_finished(stopped) == 1095
    one_token = 'vllm:request_generation_tokens_bucket{engine="0",le="1.0",model_name="tiny-llama"}'
    checked = text.replace(f"{one_token} 0.0", f"{one_token} 90.0")
    assert checked != text
    assert drill.parse_vllm_finished(checked) == 1000  # 90 health checks of one token each


def test_lab_spec_keeps_the_stack_on_its_own_subnet() -> None:
    spec = drill.lab_spec("ha", IPv4Network("10.77.40.0/24"), root=ROOT)
    assert str(spec.failover.virtual_ip) == "10.77.40.100" and spec.provider.name == "ha"


def test_lab_spec_moves_the_stack_onto_another_lab_subnet() -> None:
    subnet = IPv4Network("10.211.7.0/24")
    spec = drill.lab_spec("tkfo", subnet, root=ROOT)
    vip = spec.failover.virtual_ip
    assert vip in subnet and vip not in host_addresses(subnet, 2)
    assert spec.provider.subnet == subnet and spec.provider.name == "tkfo"
    assert spec.failover.router_id == 51 and spec.serving.port == 8000  # the rest as the stack says


def test_holders_watched_keeps_each_change_of_holders_once(monkeypatch: pytest.MonkeyPatch) -> None:
    polls = iter([["a"], ["a"], [], ["b"], ["b"]])
    all_polled = threading.Event()

    def polled(pair: object) -> list[str]:
        try:
            return next(polls)
        except StopIteration:
            all_polled.set()
            return ["b"]

    monkeypatch.setattr(drill, "holders", polled)
    with drill.holders_watched(object(), every_s=0.001) as seen:  # type: ignore[arg-type]
        assert all_polled.wait(5)
    assert seen == [("a",), (), ("b",)]


def test_a_smoke_run_that_ends_before_its_first_result_is_raised_not_awaited_forever() -> None:
    """A run that fails before its measured load (nothing answers) must end the drill with an
    error; waiting for a first result that never comes would hang the drill and its bench."""
    import asyncio
    import socket

    from tierkit.smoke.endpoint import parse_endpoint
    from tierkit.smoke.gates import Gates
    from tierkit.smoke.run import SmokeSettings

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = SmokeSettings(endpoint=parse_endpoint(f"http://127.0.0.1:{port}"), model="tiny-llama", concurrency=2,
                             duration_s=5, input_len=8, output_len=4, warmup=1, timeout_s=5,
                             gates=Gates(max_failed=0, source="test"))
    faults: list[str] = []
    with pytest.raises(TierkitError):
        asyncio.run(asyncio.wait_for(drill.smoke_around(settings, 0.1, lambda: faults.append("ran")), 60))
    assert faults == []
