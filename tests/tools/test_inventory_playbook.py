"""The inventory tierkit/inventory.py writes, read by the real ansible-playbook against site.yml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tierkit import inventory as inv
from tierkit.hosts import Host
from tierkit.spec import load_stack

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]


def hosts(n: int) -> list[Host]:
    return [Host(name=f"h{i}", address=f"10.211.7.{11 + i}", key_path="/keys/id", netns="tk-lab") for i in range(n)]


@pytest.mark.parametrize(("stack", "failover_hosts"), [("single-gpu", []), ("failover", ["h0", "h1"])])
def test_site_yml_failover_play_matches_the_pair_or_no_host(tmp_path, stack, failover_hosts):
    """Never an unknown host pattern: non-failover tiers get the group, empty."""
    spec = load_stack(stack, ROOT)
    path = inv.write(inv.render(spec, hosts(spec.server_count)), tmp_path / "inv")
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(path), "--list-hosts",
         str(ROOT / "playbooks" / "site.yml")],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )
    assert "Could not match supplied host pattern" not in listed.stdout + listed.stderr
    failover_play = listed.stdout.split("(failover):")[1].split("\n")
    count_line = next(line for line in failover_play if "hosts (" in line)
    assert count_line.strip() == f"hosts ({len(failover_hosts)}):"
    names = failover_play[failover_play.index(count_line) + 1:][: len(failover_hosts)]
    assert sorted(n.strip() for n in names) == failover_hosts
