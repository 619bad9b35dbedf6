"""tierkit/ansible.py's run_playbook on real ansible-playbook runs (local connection): the recap
per host, failures named, the secret never shown, the private data directory removed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tierkit import ansible

pytestmark = pytest.mark.tools

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


def local_run(tmp_path: Path, play: str, host: str) -> tuple[Path, Path]:
    """The playbook `play` and an inventory of one local host, written under tmp_path."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(play)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    {host}:\n      ansible_connection: local\n"
                         f"      ansible_python_interpreter: {sys.executable}\n")
    return playbook, inventory


def test_a_real_run_reports_recap_and_named_failures(tmp_path):
    playbook, inventory = local_run(tmp_path, PLAY, "local1")
    lines: list[str] = []
    log = tmp_path / "logs" / "play.log"
    result = ansible.run_playbook(playbook, inventory, [], extravars={"secret": "s3cret"}, show=lines.append,
                                  log_file=log)
    assert not result.ok and result.rc != 0
    assert result.log == str(log) and "PLAY RECAP" in log.read_text()
    assert ansible.RunResult.model_validate_json(ansible.result_file(log).read_text()) == result
    recap = result.recap["local1"]
    assert (recap.changed, recap.failed, recap.rescued, recap.ignored) == (1, 1, 1, 1)
    assert [(f.host, f.task, f.message) for f in result.failures] == [
        ("local1", "Gate", "GPU1-GPU3: PHB, need NVLink")]
    assert any("changed" in line and "Change something" in line for line in lines)
    assert all("s3cret" not in line for line in lines)
    assert [p.name for p in result.plays] == ["Wrapper check"]
    assert [f.task for f in result.plays[0].failures] == ["Gate"]
    assert [(g.task, g.host, g.passed) for g in result.gates] == [
        ("Check the secret arrived", "local1", True), ("Gate", "local1", False)]
    assert result.gates[1].message == "GPU1-GPU3: PHB, need NVLink"


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


SNOOP = """\
- name: Look for the secret on every command line
  hosts: all
  gather_facts: false
  tasks:
    - name: Read every process's command line (ansible-playbook's among them)
      ansible.builtin.shell: "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\\\000' ' '"
      register: cmdlines
      changed_when: false
    - name: The secret arrived, and on no command line
      ansible.builtin.assert:
        that:
          - secret == 'tk-s3cret-' ~ 'cmdline'
          - "'tk-s3cret-cmdline' not in cmdlines.stdout"
          - "'ansible-playbook' in cmdlines.stdout"
"""


def test_secrets_never_reach_a_command_line(tmp_path):
    playbook, inventory = local_run(tmp_path, SNOOP, "l")
    result = ansible.run_playbook(playbook, inventory, [], extravars={"secret": "tk-s3cret-cmdline"}, show=None)
    assert result.ok, result.failures


def test_extravars_file_is_private(tmp_path):
    ansible.write_extravars(tmp_path, {"vllm_api_key": "k"})
    f = tmp_path / "env" / "extravars"
    assert f.stat().st_mode & 0o777 == 0o600 and (tmp_path / "env").stat().st_mode & 0o777 == 0o700
