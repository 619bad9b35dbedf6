"""Named network namespaces (`ip netns`): create, delete, list, configure, and run commands inside.

Lab hosts are reachable only inside their lab's switch namespace, so every client of a lab host
(ssh, Ansible, the smoke test) runs there: `wrap(argv, netns)` prefixes a command with
`ip netns exec NETNS`. A `Host` whose `netns` is None is reachable from the machine itself.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tierkit.errors import TierkitError

NETNS_DIR = Path("/run/netns")


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
