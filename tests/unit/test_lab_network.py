"""Lab naming and addressing, and the commands the lab builds (no root, nothing started)."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.lab import network
from tierkit.lab.lab import ssh_argv
from tierkit.lab.machine import Machine
from tierkit.lab.state import check_name, host_name, lab_of_host


def test_hosts_get_dot_eleven_up_leaving_virtual_ips_free():
    subnet = network.allocate(set())
    assert subnet.prefixlen == 24 and subnet.subnet_of(network.POOL)
    addresses = [network.host_address(subnet, i) for i in range(1, network.MAX_HOSTS + 1)]
    assert str(addresses[0]).endswith(".11") and str(addresses[2]).endswith(".13")
    assert all(int(str(a).rsplit(".", 1)[1]) < 100 for a in addresses)
    assert str(network.gateway(subnet)).endswith(".1")


def test_each_lab_gets_its_own_subnet():
    first = network.allocate(set())
    second = network.allocate({first})
    assert first != second and not first.overlaps(second)
    with pytest.raises(TierkitError, match="every /24"):
        network.allocate(set(network.POOL.subnets(new_prefix=24)))


def test_macs_are_fixed_unique_and_locally_administered():
    a, b = IPv4Network("10.211.1.0/24"), IPv4Network("10.211.2.0/24")
    macs = [network.mac(s, i) for s in (a, b) for i in range(network.MAX_HOSTS + 1)]
    assert len(set(macs)) == len(macs)
    assert all(int(m.split(":")[0], 16) & 0b10 for m in macs)
    assert network.mac(a, 3) == network.mac(a, 3)


@pytest.mark.parametrize("name", ["demo", "tp-test", "lab2", "a-b-c"])
def test_good_lab_names(name):
    assert check_name(name) == name
    assert lab_of_host(host_name(name, 12)) == (name, 12)


@pytest.mark.parametrize("name", ["Demo", "2lab", "lab-2", "a_b", "x" * 21, "", "a/b"])
def test_bad_lab_names(name):
    with pytest.raises(TierkitError, match="not a lab name"):
        check_name(name)


def test_host_names_must_name_their_lab():
    with pytest.raises(TierkitError, match="not a lab host name"):
        lab_of_host("demo")


def test_ssh_always_checks_the_pinned_host_key():
    host = Host(name="demo-1", address="10.211.1.11", key_path="/k", known_hosts="/kh",
                netns="tks-demo")
    argv = ssh_argv(host, ["true"])
    assert argv[:4] == ["ip", "netns", "exec", "tks-demo"]
    assert "StrictHostKeyChecking=yes" in argv and "UserKnownHostsFile=/kh" in argv
    assert argv[-2:] == ["root@10.211.1.11", "true"]
    assert not any(a.lower().endswith("=no") for a in argv)


def test_nspawn_boots_systemd_in_the_hosts_namespace_with_net_admin():
    args = Machine("demo", "demo-2", 2).nspawn_args(Path("/var/lib/tierkit/lab-share"))
    assert "--boot" in args and "--register=no" in args and "--keep-unit" in args
    assert "--capability=CAP_NET_ADMIN" in args
    assert "--network-namespace-path=/run/netns/tkh-demo-2" in args
    assert any(a.startswith("--bind-ro=") and a.endswith(":/opt/tierkit") for a in args)


@pytest.mark.parametrize("rate", ["100mbit", "1.5gbit", "500kbit"])
def test_throttle_rates_tc_understands(rate):
    assert network.check_rate(rate) == rate


@pytest.mark.parametrize("rate", ["fast", "100", "0mbit", "100mb", "1gbit; reboot"])
def test_bad_throttle_rates_are_refused(rate):
    with pytest.raises(TierkitError, match="--throttle: .* is not a rate; use a number with kbit, mbit or gbit"):
        network.check_rate(rate)
