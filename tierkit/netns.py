"""Named network namespaces (`ip netns`): create, delete, list, configure, and run code inside.

Lab hosts are reachable only inside their lab's switch namespace, so every client of a lab host
(ssh, Ansible, the smoke test) runs there. A `Host` whose `netns` is None is reachable from the
machine itself. `for_hosts(hosts)` is the one rule for which namespace a set of hosts needs; a
client gets there by `wrap(argv, netns)` (a command prefixed with `ip netns exec NETNS`),
`enter(netns)` (this process) or `call_in(netns, fn)` (a thread of its own).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from tierkit.errors import TierkitError
from tierkit.hosts import Host

T = TypeVar("T")
CLONE_NEWNET = 0x40000000  # setns(2): join a network namespace

NETNS_DIR = Path("/run/netns")


def for_hosts(hosts: Iterable[Host]) -> str | None:
    """The one network namespace these hosts are reached from (None: this machine's own);
    TierkitError when they need different ones."""
    spaces = {h.netns for h in hosts}
    if len(spaces) > 1:
        raise TierkitError(f"hosts: reached from different network namespaces "
                           f"({', '.join(sorted(map(str, spaces)))}); handle them in separate runs")
    return spaces.pop() if spaces else None


def enter(name: str) -> None:
    """Move the calling thread into network namespace /run/netns/NAME (threads it starts later
    stay there; a process entering before it starts any thread moves as a whole)."""
    path = NETNS_DIR / name
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise TierkitError(f"hosts: network namespace {name} is missing ({exc.strerror}); is the lab up? (tierkit lab status)") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise TierkitError(f"hosts: cannot enter network namespace {name} ({os.strerror(err)}); run as root")
    finally:
        os.close(fd)


def call_in(name: str, fn: Callable[[], T]) -> T:
    """fn() in a thread that entered network namespace `name`; its result or its exception."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            enter(name)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{name}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def wrap(argv: list[str], netns: str | None) -> list[str]:
    """`argv` as run inside `netns` (unchanged when netns is None)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def names() -> list[str]:
    """Every named namespace on the machine."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip [-n NETNS] ARGS...`; a failure raises one line with ip's message."""
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise TierkitError(f"network: `{' '.join(argv)}` failed ({proc.stderr.strip()}); "
                           f"run `tierkit lab down` for the lab and try again")
    return proc


def add(name: str) -> None:
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def delete(name: str) -> None:
    """Remove the namespace (and every interface in it); nothing if it does not exist."""
    if exists(name):
        ip("netns", "delete", name)
