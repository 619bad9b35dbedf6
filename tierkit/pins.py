"""Pinned host keys travel in the host records (`Host.host_key`, from Readiness's output, which a
Pulumi state keeps as a secret); a known_hosts file is only a cache that any step rebuilds from
them. `write_known_hosts` is that rebuild: SSH and Ansible then verify each host against its pin
(`StrictHostKeyChecking=yes`), so a host presenting another key is refused, never re-trusted."""

from __future__ import annotations

import os
from pathlib import Path

from tierkit.hosts import Host


def write_known_hosts(hosts: list[Host], path: Path) -> list[Host]:
    """Write the pinned keys of `hosts` to `path` (0600, replaced atomically) and return the hosts
    pointed at it. Hosts without a pinned key are returned unchanged (their own known_hosts)."""
    pinned = [h for h in hosts if h.host_key]
    if not pinned:
        return hosts
    from tierkit.ssh_wait import known_hosts_entry  # paramiko loads only when there is a pin to write
    path = path.resolve()  # SSH runs from Ansible's own working directory
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{known_hosts_entry(h)} {h.host_key}\n" for h in pinned)
    tmp.replace(path)
    return [h.model_copy(update={"known_hosts": str(path)}) if h.host_key else h for h in hosts]
