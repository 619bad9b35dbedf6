"""SSH keys the lab makes before any host boots: the lab's client key and each host's host key.

Every client verifies host keys against the lab's known_hosts file; nothing ever skips the check.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tierkit.errors import TierkitError


def generate(path: Path, comment: str) -> str:
    """A new ed25519 key pair at `path` and `path`.pub (replacing any); the public key line."""
    public = path.with_name(path.name + ".pub")
    path.unlink(missing_ok=True)
    public.unlink(missing_ok=True)
    proc = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise TierkitError(f"lab keys: ssh-keygen failed ({proc.stderr.strip()}); "
                           f"install openssh-client")
    return public.read_text().strip()


def known_hosts_line(names: list[str], public_key: str) -> str:
    """`name,address ssh-ed25519 AAAA...`: the host's key pinned under all its names."""
    kind, blob = public_key.split()[:2]
    return f"{','.join(names)} {kind} {blob}"
