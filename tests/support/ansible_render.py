"""Render a role's templates with ansible-playbook itself (local connection) for unit tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tierkit import inventory
from tierkit.hosts import Host
from tierkit.spec import TierSpec

ROOT = Path(__file__).resolve().parents[2]  # tests/support/ -> the project
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


TEMPLATE_PLAY = """\
- name: Render the {role_name} role's templates
  hosts: {group}
  gather_facts: false
  vars_files: ["{role}/vars/main.yml"]
  tasks:{pre_tasks}
    - name: Render one template
      ansible.builtin.template:
        src: "{role}/templates/{{{{ item.value }}}}"
        dest: "{out}/{{{{ inventory_hostname }}}}/{{{{ item.key }}}}"
        mode: "0755"
      loop: "{{{{ files | dict2items }}}}"
"""


def template_play(role: Path, group: str, out: Path, pre_tasks: str = "") -> str:
    """A play rendering each of `files` (an extra var: {output name: template}) for every host of
    `group` into OUT/<host>/<output name>, after `pre_tasks` (YAML task items, indented 4)."""
    return TEMPLATE_PLAY.format(role_name=role.name, group=group, role=role, out=out, pre_tasks=pre_tasks)


def render_play(role: Path, spec: TierSpec, hosts: list[Host], play: str, work: Path, extra: dict[str, Any]) -> None:
    """Write tierkit's inventory for `hosts` under `work` (the role's defaults as group `all`, the
    lowest layer), then run `play` against it locally; fails the test with Ansible's output."""
    hosts_file = inventory.write(inventory.render(spec, hosts), work / "inventory")
    shutil.copy(role / "defaults" / "main.yml", work / "inventory" / "group_vars" / "all.yml")
    play_file = work / "render.yml"
    play_file.write_text(play)
    extra = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **extra}
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           # the play is outside the role: its filter plugins are loaded by path
           "ANSIBLE_FILTER_PLUGINS": str(role / "filter_plugins")}
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(hosts_file), str(play_file), "-e", json.dumps(extra)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
