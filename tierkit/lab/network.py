"""A lab's private network: a switch namespace and one namespace per host, nothing else.

The switch namespace `tks-<lab>` holds a bridge at .1 of the lab's own /24 (10.211.N.0/24, a
different N for each lab, so labs coexist). Each host gets a namespace `tkh-<host>` with a veth
`eth0` into the bridge, a fixed MAC (a new MAC on re-create left stale ARP entries that stalled
SSH for up to 69 s) and address .11, .12, ...; .100-.199 stay free for virtual IPs. Nothing is
added to the machine's root namespace, and the switch has no default route and does not
forward, so no lab address is ever routed off the machine. Hosts route via the switch (.1),
which lets software that probes for a default route find one without reaching anything.
"""

from __future__ import annotations

import re
import subprocess
from ipaddress import IPv4Address, IPv4Network

from tierkit import netns
from tierkit.errors import TierkitError
from tierkit.safe_yaml import excerpt

POOL = IPv4Network("10.211.0.0/16")
FIRST_HOST = 11  # host i (1-based) gets .(10 + i)
FIRST_VIP = 100  # .100-.199 stay free for virtual IPs
LAST_VIP = 199
MAX_HOSTS = 32
BRIDGE = "br0"


def switch_netns(lab: str) -> str:
    return f"tks-{lab}"


def host_netns(host: str) -> str:
    return f"tkh-{host}"


def port(index: int) -> str:
    """The host's veth end in the switch namespace."""
    return f"h{index}"


def allocate(used: set[IPv4Network]) -> IPv4Network:
    """The first /24 of the pool no other lab uses (the pool's first /24 is skipped)."""
    for subnet in list(POOL.subnets(new_prefix=24))[1:]:
        if subnet not in used:
            return subnet
    raise TierkitError(f"lab: every /24 of {POOL} is in use; run `tierkit lab down` for a lab")


def live_subnets() -> set[IPv4Network]:
    """The /24 of every lab switch namespace on the machine, recorded or not: a lab whose record
    is gone or unreadable still owns its addresses until `lab down` removes its namespaces."""
    found = set()
    for ns in netns.names():
        if not ns.startswith(switch_netns("")):
            continue
        out = netns.ip("-o", "-4", "addr", "show", "dev", BRIDGE, netns=ns, check=False).stdout
        for field in out.split():
            if "/" in field and field[0].isdigit():
                found.add(IPv4Network(field, strict=False))
    return found


def check_subnet(subnet: str | IPv4Network) -> IPv4Network:
    """A lab subnet given by the user: a private /24 (it lives only inside the lab's namespaces)."""
    try:
        net = IPv4Network(subnet)
    except ValueError as exc:
        raise TierkitError(f"--subnet: {subnet} is not an IPv4 network ({exc}); e.g. 10.77.40.0/24") from None
    if net.prefixlen != 24 or not net.is_private:
        raise TierkitError(f"--subnet: {net} is not a private /24; use one such as 10.77.40.0/24")
    return net


def gateway(subnet: IPv4Network) -> IPv4Address:
    return subnet[1]


def host_address(subnet: IPv4Network, index: int) -> IPv4Address:
    return subnet[FIRST_HOST - 1 + index]


def free_vip(subnet: IPv4Network) -> IPv4Address:
    """The first address kept free for a virtual IP."""
    return subnet[FIRST_VIP]


def mac(subnet: IPv4Network, index: int) -> str:
    """Fixed, locally administered: 02:74:6b (tk), the lab's third octet, 0 (bridge) or 1, index."""
    third = subnet.network_address.packed[2]
    return f"02:74:6b:{third:02x}:{1 if index else 0:02x}:{index:02x}"


def create_switch(lab: str, subnet: IPv4Network) -> None:
    ns = switch_netns(lab)
    netns.add(ns)
    netns.ip("link", "add", BRIDGE, "address", mac(subnet, 0), "type", "bridge", netns=ns)
    netns.ip("addr", "add", f"{gateway(subnet)}/{subnet.prefixlen}", "dev", BRIDGE, netns=ns)
    netns.ip("link", "set", BRIDGE, "up", netns=ns)
    # a new namespace may inherit forwarding from the machine's: the switch never forwards
    netns.ip("netns", "exec", ns, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")


def attach_host(lab: str, host: str, index: int, subnet: IPv4Network) -> None:
    """The host's namespace, wired into the switch, with its address and a route via .1."""
    ns, sw = host_netns(host), switch_netns(lab)
    netns.add(ns)
    netns.ip("link", "add", port(index), "type", "veth", "peer", "name", "eth0", "netns", ns,
             netns=sw)
    netns.ip("link", "set", port(index), "master", BRIDGE, "up", netns=sw)
    netns.ip("link", "set", "eth0", "address", mac(subnet, index), "up", netns=ns)
    netns.ip("addr", "add", f"{host_address(subnet, index)}/{subnet.prefixlen}", "dev", "eth0",
             netns=ns)
    netns.ip("route", "add", "default", "via", str(gateway(subnet)), netns=ns)


def set_link(lab: str, index: int, up: bool) -> None:
    """Cut (down) or restore (up) the host's cable: its port on the switch."""
    netns.ip("link", "set", port(index), "up" if up else "down", netns=switch_netns(lab))


def link_up(lab: str, index: int) -> bool:
    """Whether the host's port on the switch is up (not cut)."""
    proc = netns.ip("-o", "link", "show", port(index), netns=switch_netns(lab), check=False)
    flags = proc.stdout.partition("<")[2].partition(">")[0].split(",")
    return proc.returncode == 0 and "UP" in flags


RATE_PATTERN = re.compile(r"[1-9][0-9]*(\.[0-9]+)?(kbit|mbit|gbit)")


def check_rate(rate: str) -> str:
    """A link rate for `--throttle`, as tc writes it: e.g. 100mbit, 1.5gbit, 500kbit."""
    if not RATE_PATTERN.fullmatch(rate):
        raise TierkitError(f"--throttle: {excerpt(rate)} is not a rate; use a number with kbit, mbit or gbit, e.g. 100mbit")
    return rate


def _tc(netns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["tc", "-n", netns, *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise TierkitError(f"network: `{' '.join(argv)}` failed ({proc.stderr.strip()}); check the lab with "
                           f"`tierkit lab status`")
    return proc


def throttle(lab: str, host: str, index: int, rate: str) -> None:
    """Limit the host's cable to `rate` both ways: a token bucket on each end of its veth (the
    switch's port sends towards the host, the host's eth0 away from it)."""
    check_rate(rate)
    for ns, dev in ((switch_netns(lab), port(index)), (host_netns(host), "eth0")):
        _tc(ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", "64kb", "latency", "100ms")


def unthrottle(lab: str, host: str, index: int) -> None:
    """Remove a throttle (nothing when there is none)."""
    for ns, dev in ((switch_netns(lab), port(index)), (host_netns(host), "eth0")):
        if "tbf" in _tc(ns, "qdisc", "show", "dev", dev, check=False).stdout:
            _tc(ns, "qdisc", "del", "dev", dev, "root")


def throttled(lab: str, index: int) -> str | None:
    """The rate the host's cable is throttled to, or None."""
    out = _tc(switch_netns(lab), "qdisc", "show", "dev", port(index), check=False).stdout
    match = re.search(r"\btbf\b.*?\brate (\S+)", out)
    return match.group(1) if match else None


def forget_neighbour(lab: str, address: IPv4Address) -> None:
    """Drop the switch's ARP entry for a host that is about to boot again."""
    netns.ip("neigh", "flush", "to", str(address), netns=switch_netns(lab), check=False)


def remove(lab: str, hosts: list[str]) -> None:
    """Delete the host namespaces (their veths go with them), then the switch."""
    for host in hosts:
        netns.delete(host_netns(host))
    netns.delete(switch_netns(lab))


def lab_host_namespaces(lab: str) -> list[str]:
    """Host namespaces of `lab` that exist now, found by name (works without any lab state)."""
    prefix = host_netns(f"{lab}-")
    return [n for n in netns.names() if n.startswith(prefix) and n[len(prefix):].isdigit()]
