"""tierkit/ansible.py: the ansible-runner wrapper's event reading, failure messages and playbook
names (real ansible-playbook runs: tests/tools/test_ansible_run_playbook.py)."""

from __future__ import annotations

import pytest

from tierkit import ansible
from tierkit.errors import TierkitError


def test_failure_message_prefers_the_assert_message():
    assert ansible.failure_message({"msg": "  a\n b ", "stderr": "x"}) == "a b"
    assert ansible.failure_message({"stderr": "boom"}) == "boom"
    assert ansible.failure_message({"results": [{"failed": True, "msg": "one"}, {"failed": False},
                                                {"failed": True, "stdout": "two"}]}) == "one; two"
    assert ansible.failure_message({"censored": "the output has been hidden"}) == "the output has been hidden"
    assert ansible.failure_message({}) == "failed (no message)"


def test_a_looped_failure_gives_one_line_per_failed_item():
    c = ansible.EventCollector(show=None)
    res = {"msg": "One or more items failed", "results": [
        {"failed": True, "msg": "preflight: disk"}, {"failed": False}, {"failed": True, "msg": "preflight: lock"}]}
    c({"event": "runner_on_failed", "event_data": {"host": "h1", "task": "Refuse the host", "res": res}})
    assert [f.message for f in c.failures] == ["preflight: disk", "preflight: lock"]


def test_unreachable_hosts_are_failures():
    c = ansible.EventCollector(show=None)
    c({"event": "runner_on_unreachable", "event_data": {"host": "h1", "task": "Gathering Facts",
                                                        "res": {"msg": "Host key verification failed."}}})
    c({"event": "playbook_on_stats", "event_data": {"dark": {"h1": 1}, "ok": {"h2": 3}}})
    assert c.recap["h1"].unreachable == 1 and c.recap["h2"].ok == 3
    assert [f.message for f in c.failures] == ["Host key verification failed."]


def test_playbook_names():
    assert ansible.playbook_path("site") == ansible.PLAYBOOKS / "site.yml"
    with pytest.raises(TierkitError, match="no playbook 'sitee'"):
        ansible.playbook_path("sitee")


def test_plays_are_timed_and_asserts_are_the_gates():
    now = iter([10.0, 12.5, 12.5, 20.0])
    c = ansible.EventCollector(show=None, clock=lambda: next(now))
    c({"event": "playbook_on_play_start", "event_data": {"play": "Drivers"}})
    c({"event": "runner_on_ok", "event_data": {"host": "h1", "task": "Check the driver", "play": "Drivers",
                                               "resolved_action": "ansible.builtin.assert", "res": {"msg": "All assertions passed"}}})
    c({"event": "runner_on_ok", "event_data": {"host": "h1", "task": "Install", "play": "Drivers",
                                               "resolved_action": "ansible.builtin.apt", "res": {"changed": True}}})
    c({"event": "playbook_on_play_start", "event_data": {"play": "NCCL"}})
    c({"event": "runner_on_failed", "event_data": {"host": "h1", "task": "Bus bandwidth", "play": "NCCL",
                                                   "task_action": "ansible.builtin.assert", "res": {"msg": "12 < 28 GB/s"}}})
    c({"event": "playbook_on_stats", "event_data": {"failures": {"h1": 1}}})
    assert [(p.name, p.seconds, len(p.failures)) for p in c.plays] == [("Drivers", 2.5, 0), ("NCCL", 7.5, 1)]
    assert [(g.play, g.task, g.passed, g.message) for g in c.gates] == [
        ("Drivers", "Check the driver", True, "All assertions passed"), ("NCCL", "Bus bandwidth", False, "12 < 28 GB/s")]
