"""Lab hosts are real servers: they come up, answer SSH with pinned keys, keep their own files,
run systemd, coexist with another lab, and reach nothing outside their lab."""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from tierkit import netns
from tierkit.hosts import load_hosts
from tierkit.lab import Lab
from tierkit.lab.lab import ssh_argv

pytestmark = pytest.mark.lab


def _ssh(lab: Lab, host: str, command: str) -> subprocess.CompletedProcess[str]:
    return lab.ssh(host, [command], capture_output=True, text=True, check=False, timeout=60)


def test_three_hosts_come_up(lab: Lab) -> None:
    assert [h.name for h in lab.hosts] == ["tktest-1", "tktest-2", "tktest-3"]
    assert [str(h.address) for h in lab.hosts] == [str(lab.subnet[i]) for i in (11, 12, 13)]
    assert all(lab.machine(h.name).running() for h in lab.hosts)
    assert load_hosts(lab.hosts_file) == lab.hosts
    again = Lab.up(lab.name, 3, "h100-sxm", 8, quiet=True)  # idempotent: the same lab
    assert again.hosts == lab.hosts and again.subnet == lab.subnet


def test_ssh_works_with_strict_host_key_checking(lab: Lab, tmp_path) -> None:
    for host in lab.hosts:
        out = _ssh(lab, host.name, "hostname")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == host.name
    # the check is real: no pinned key, or another host's key, and ssh refuses
    first, second = lab.hosts[0], lab.hosts[1]
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    lines = lab.known_hosts.read_text().splitlines()
    swapped = tmp_path / "swapped_known_hosts"
    swapped.write_text(f"{first.address} {' '.join(lines[1].split()[1:])}\n")
    for known_hosts in (empty, swapped):
        bad = first.model_copy(update={"known_hosts": str(known_hosts)})
        out = subprocess.run(ssh_argv(bad, ["true"]), capture_output=True, text=True, timeout=60)
        assert out.returncode == 255
        assert "Host key verification failed" in out.stderr
    assert second.name in lines[1]


def test_each_host_sees_only_its_own_files(lab: Lab) -> None:
    first, *others = [h.name for h in lab.hosts]
    assert _ssh(lab, first, "echo mine > /root/only-on-first").returncode == 0
    assert _ssh(lab, first, "cat /root/only-on-first").stdout == "mine\n"
    for other in others:
        assert _ssh(lab, other, "test -e /root/only-on-first").returncode == 1
    assert (lab.machine(first).dir / "upper/root/only-on-first").exists()
    assert not (Path(lab.record.image) / "root/only-on-first").exists()


def test_systemd_runs_in_each_host(lab: Lab) -> None:
    for host in lab.hosts:
        out = _ssh(lab, host.name, "readlink /proc/1/exe; systemctl is-system-running --wait; "
                                   "systemctl is-active ssh.service dbus.service")
        assert out.stdout.split() == ["/usr/lib/systemd/systemd", "running", "active", "active"]


def test_two_labs_coexist(lab: Lab, second_lab: Lab) -> None:
    assert not lab.subnet.overlaps(second_lab.subnet)
    assert lab.netns != second_lab.netns
    for each in (lab, second_lab):
        for host in each.hosts:
            assert _ssh(each, host.name, "true").returncode == 0
    # each lab's switch knows only its own subnet: the other lab is not routed
    other = second_lab.hosts[0].address
    route = lab.run(["ip", "route", "get", other], capture_output=True, text=True)
    assert route.returncode != 0 and "unreachable" in route.stderr
    # and a host of one lab cannot reach a host of the other
    ping = _ssh(lab, lab.hosts[0].name, f"ping -c1 -W1 {other}")
    assert ping.returncode != 0


def _ip_json(namespace: str | None, *args: str) -> list[dict]:
    out = subprocess.run(netns.wrap(["ip", "-j", *args], namespace), capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout or "[]")


def test_no_lab_address_is_reachable_from_the_machine_or_routed_off_it(lab: Lab) -> None:
    # the machine's own namespace has no lab interface, address or route
    for link in _ip_json(None, "addr"):
        assert not link["address"].startswith("02:74:6b:"), link["ifname"]
        assert not [a for a in link.get("addr_info", []) if a["family"] == "inet"
                    and IPv4Address(a["local"]) in lab.subnet], link["ifname"]
    for route in _ip_json(None, "route", "show", "table", "all"):
        dst = route.get("dst", "default")
        if dst != "default" and ":" not in dst:
            assert not IPv4Network(dst, strict=False).overlaps(lab.subnet), route
    # the switch holds the bridge and one port per host, no default route, and never forwards
    assert sorted(link["ifname"] for link in _ip_json(lab.netns, "link")) == [
        "br0", "h1", "h2", "h3", "lo"]
    assert _ip_json(lab.netns, "route", "show", "default") == []
    route = lab.run(["ip", "route", "get", "198.51.100.1"], capture_output=True, text=True)
    assert route.returncode != 0 and "unreachable" in route.stderr
    forwarding = lab.run(["cat", "/proc/sys/net/ipv4/ip_forward"], capture_output=True, text=True)
    assert forwarding.stdout.strip() == "0"
    # each host has one cable, and it ends in the switch
    for host in lab.hosts:
        links = {link["ifname"]: link for link in _ip_json(f"tkh-{host.name}", "link")}
        assert sorted(links) == ["eth0", "lo"]
        assert "link_netnsid" in links["eth0"]
