"""tierkit/ansible.py: the ansible-runner wrapper (recap per host, failures named, streaming)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tierkit import ansible, netns
from tierkit.errors import TierkitError
from tierkit.hosts import Host

PLAY = """\
- name: Wrapper check
  hosts: all
  gather_facts: false
  tasks:
    - name: Change something
      ansible.builtin.command: "true"
      changed_when: true
    - name: Survive a rescued failure
      block:
        - name: Fail inside a block
          ansible.builtin.fail:
            msg: rescued away
      rescue:
        - name: Rescue it
          ansible.builtin.debug:
            msg: rescued
    - name: Ignore a failure
      ansible.builtin.fail:
        msg: ignored
      ignore_errors: true
    - name: Check the secret arrived
      ansible.builtin.assert:
        that: secret == 's3cret'
        quiet: true
    - name: Gate
      ansible.builtin.assert:
        that: false
        fail_msg: "GPU1-GPU3: PHB, need NVLink"
"""


def test_a_real_run_reports_recap_and_named_failures(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    local1:\n      ansible_connection: local\n"
                         f"      ansible_python_interpreter: {sys.executable}\n")
    lines: list[str] = []
    log = tmp_path / "logs" / "play.log"
    result = ansible.run_playbook(playbook, inventory, [], extravars={"secret": "s3cret"}, show=lines.append,
                                  log_file=log)
    assert not result.ok and result.rc != 0
    assert result.log == str(log) and "PLAY RECAP" in log.read_text()
    recap = result.recap["local1"]
    assert (recap.changed, recap.failed, recap.rescued, recap.ignored) == (1, 1, 1, 1)
    assert [(f.host, f.task, f.message) for f in result.failures] == [
        ("local1", "Gate", "GPU1-GPU3: PHB, need NVLink")]
    assert any("changed" in line and "Change something" in line for line in lines)
    assert all("s3cret" not in line for line in lines)


def test_private_data_is_removed(tmp_path, monkeypatch):
    made: list[Path] = []
    real = ansible.tempfile.mkdtemp

    def spy(**kw):
        path = real(dir=tmp_path, **kw)
        made.append(Path(path))
        return path

    monkeypatch.setattr(ansible.tempfile, "mkdtemp", spy)
    playbook = tmp_path / "ok.yml"
    playbook.write_text("- name: Nothing\n  hosts: all\n  gather_facts: false\n  tasks: []\n")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    l:\n      ansible_connection: local\n")
    result = ansible.run_playbook(playbook, inventory, [], extravars={"vllm_api_key": "k"}, show=None)
    assert result.ok and made and not made[0].exists()


def test_failure_message_prefers_the_assert_message():
    assert ansible.failure_message({"msg": "  a\n b ", "stderr": "x"}) == "a b"
    assert ansible.failure_message({"stderr": "boom"}) == "boom"
    assert ansible.failure_message({"results": [{"failed": True, "msg": "one"}, {"failed": False},
                                                {"failed": True, "stdout": "two"}]}) == "one; two"
    assert ansible.failure_message({"censored": "the output has been hidden"}) == "the output has been hidden"
    assert ansible.failure_message({}) == "failed (no message)"


def test_unreachable_hosts_are_failures():
    c = ansible.EventCollector(show=None)
    c({"event": "runner_on_unreachable", "event_data": {"host": "h1", "task": "Gathering Facts",
                                                        "res": {"msg": "Host key verification failed."}}})
    c({"event": "playbook_on_stats", "event_data": {"dark": {"h1": 1}, "ok": {"h2": 3}}})
    assert c.recap["h1"].unreachable == 1 and c.recap["h2"].ok == 3
    assert [f.message for f in c.failures] == ["Host key verification failed."]


def test_hosts_in_different_namespaces_are_refused():
    a = Host(name="a", address="10.0.0.1", key_path="/k", netns="x")
    b = Host(name="b", address="10.0.0.2", key_path="/k", netns="y")
    assert netns.for_hosts([a]) == "x"
    assert netns.for_hosts([]) is None
    with pytest.raises(TierkitError, match="different network namespaces"):
        netns.for_hosts([a, b])


def test_playbook_names():
    assert ansible.playbook_path("site") == ansible.PLAYBOOKS / "site.yml"
    with pytest.raises(TierkitError, match="no playbook 'sitee'"):
        ansible.playbook_path("sitee")
