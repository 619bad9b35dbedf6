"""`lab down` removes everything a lab made, quickly, also after its nspawn was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tierkit.lab import Lab

pytestmark = pytest.mark.lab

DOWN_S_PER_HOST = 2.0


def test_down_leaves_nothing_behind(find_leftovers) -> None:
    name = "tktest-down"
    Lab.down(name)
    lab = Lab.up(name, 2, "l40s", 1, quiet=True)
    made = find_leftovers(name)
    # the check sees every kind of thing a lab makes
    for kind in ("netns", "mount", "process", "cgroup", "state"):
        assert any(item.startswith(kind) for item in made), (kind, made)
    started = time.monotonic()
    assert Lab.down(name) is True
    seconds = time.monotonic() - started
    print(f"lab down: {seconds:.2f} s for {len(lab.hosts)} hosts")
    assert find_leftovers(name) == []
    assert seconds < DOWN_S_PER_HOST * len(lab.hosts)
    assert Lab.down(name) is False  # idempotent
    cli = subprocess.run([sys.executable, "-m", "tierkit", "lab", "down", name],
                         capture_output=True, text=True, check=False)
    assert cli.returncode == 0 and f"no lab {name}" in cli.stdout


def test_a_killed_nspawn_is_cleaned_up_by_the_next_down(find_leftovers) -> None:
    name = "tktest-kill"
    Lab.down(name)
    lab = Lab.up(name, 1, "l40s", 1, quiet=True)
    machine = lab.machine(lab.hosts[0].name)
    nspawn = machine.nspawn_pid()
    assert nspawn is not None
    os.kill(nspawn, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while machine.nspawn_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert machine.nspawn_pid() is None
    # SIGKILL on nspawn leaves the guest running: systemd and sshd are still there
    assert any("(systemd)" in item for item in find_leftovers(name))
    assert lab.ssh(lab.hosts[0].name, ["true"], capture_output=True).returncode == 0
    assert Lab.down(name) is True
    assert find_leftovers(name) == []
