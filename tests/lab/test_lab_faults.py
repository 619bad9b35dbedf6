"""Server faults for failover tests (stop, kill, cut the link, restore), guest reboots, and the
CLI's view of a lab. They run on the session lab's last host and leave it as they found it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tierkit.hosts import load_hosts
from tierkit.lab import Lab

pytestmark = pytest.mark.lab


def _answers(lab: Lab, host: str) -> bool:
    from tierkit.lab.lab import ssh_argv

    argv = ssh_argv(lab.host(host), ["true"], connect_timeout_s=2)
    return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0


def _pid1_start(lab: Lab, host: str) -> str:
    out = lab.ssh(host, ["cut -d' ' -f22 /proc/1/stat"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierkit", "lab", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_cut_link_and_restore(lab: Lab) -> None:
    host = lab.hosts[-1].name
    boot = _pid1_start(lab, host)
    lab.fault(host, "cut-link")
    assert not _answers(lab, host)
    assert {s.name: s.link for s in lab.status()}[host] == "cut"
    lab.fault(host, "restore")
    assert _answers(lab, host)
    assert _pid1_start(lab, host) == boot  # the host kept running behind its cut cable


@pytest.mark.parametrize("action", ["stop", "kill"])
def test_a_downed_host_is_restored(lab: Lab, action: str) -> None:
    host = lab.hosts[-1].name
    boot = _pid1_start(lab, host)
    lab.fault(host, action)
    assert not lab.machine(host).running()
    assert {s.name: s.state for s in lab.status()}[host] == "stopped"
    lab.fault(host, "restore")
    assert lab.machine(host).running() and _answers(lab, host)
    assert _pid1_start(lab, host) != boot


def test_a_guest_reboot_boots_it_again(lab: Lab) -> None:
    """`lab fault --reboot`: `systemctl reboot` in the guest; it returns once the host answers SSH
    in its new boot."""
    host = lab.hosts[-1].name
    boot = _pid1_start(lab, host)
    lab.fault(host, "reboot")
    now = _pid1_start(lab, host)
    assert now and now != boot
    assert lab.machine(host).exited() is None  # the supervisor relaunched it (nspawn exit 133)


def test_cli_up_status_ssh_exec_fault(lab: Lab, tmp_path) -> None:
    up = _cli("up", "--name", lab.name, "--hosts", "3", "--gpu", "h100-sxm", "--gpus-per-host",
              "8", "--json")
    assert up.returncode == 0, up.stderr
    hosts_file = tmp_path / "hosts.json"
    hosts_file.write_text(up.stdout)
    assert load_hosts(hosts_file) == lab.hosts
    other = _cli("up", "--name", lab.name, "--hosts", "2", "--gpu", "h100-sxm",
                 "--gpus-per-host", "8")
    assert other.returncode == 2 and "exists with other settings" in other.stderr
    status = json.loads(_cli("status", lab.name, "--json").stdout)
    assert [(h["state"], h["link"], h["ssh"]) for h in status["hosts"]] == [
        ("running", "up", True)] * 3
    ssh = _cli("ssh", lab.hosts[1].name, "--", "hostname")
    assert ssh.stdout.strip() == lab.hosts[1].name
    # exec runs where the hosts are reachable: their pinned key is what they serve
    scan = _cli("exec", lab.name, "--", "ssh-keyscan", "-t", "ed25519", lab.hosts[0].address)
    served = scan.stdout.split()[1:3]
    assert served and " ".join(served) in lab.known_hosts.read_text()
    host = lab.hosts[-1].name
    assert _cli("fault", host, "--cut-link").returncode == 0
    assert _cli("fault", host, "--restore").returncode == 0
    assert _answers(lab, host)
    bad = _cli("fault", host)
    assert bad.returncode == 2 and "exactly one of" in bad.stderr
