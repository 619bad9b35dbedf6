"""The lab's host image: Debian bookworm with systemd, sshd and every package the playbooks need.

Built once with mmdebstrap into `/var/cache/tierkit/lab-image-<key>/rootfs`, keyed on the recipe
(suite, mirrors, packages, customize steps), and shared read-only by every lab host as the lower
layer of its overlay. Lab hosts reach no registry, so whatever a role installs with apt must
already be here: append to IMAGE_PACKAGES (the cache key follows it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tierkit.cache import build_log, ensure_dir, is_ready, keyed_path, run_logged
from tierkit.errors import TierkitError

SUITE = "bookworm"
MIRROR = os.environ.get("TIERKIT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("TIERKIT_DEBIAN_SECURITY_MIRROR",
                                 "http://deb.debian.org/debian-security")

# Every package a lab host needs, playbooks included. One list: others append to it.
IMAGE_PACKAGES: tuple[str, ...] = (
    # a booting, reachable server
    "systemd-sysv", "dbus", "openssh-server", "sudo", "procps", "kmod", "iproute2",
    "iputils-ping",
    # what Ansible needs: its apt module, and setfacl to become an unprivileged user
    "python3", "python3-apt", "acl",
    # the vllm role: a venv installed from the wheelhouse; vLLM's CPU backend compiles kernels
    # with torch inductor (g++, Python headers) and links libnuma
    "python3-venv", "python3-pip", "python3-dev", "g++", "libnuma1",
    # the nvidia_driver role's apt repository handling
    "curl", "ca-certificates", "gnupg",
    # the failover role
    "keepalived", "haproxy", "nftables",
    # the network gate of the multi-server tier
    "iperf3",
)

# Run on the finished tree ("$1" is its root). mmdebstrap copies this machine's /etc/hostname and
# resolv.conf; openssh-server's postinst generated host keys every host would share. Each lab
# host gets its own hostname, machine-id and host key from the lab before it boots. HAProxy's
# package enables it with an empty configuration: the failover role enables it once configured.
# Lab hosts reach no mirror, so the image keeps no Debian source (an unreachable one fails every
# `apt-get update`): apt reads only the repositories the playbooks add (the lab's stand-in).
CUSTOMIZE_STEPS: tuple[str, ...] = (
    'rm -f "$1/etc/hostname" "$1"/etc/ssh/ssh_host_*',
    'mv "$1/etc/apt/sources.list" "$1/etc/apt/sources.list.offline"',
    'rm -f "$1/etc/systemd/system/multi-user.target.wants/haproxy.service"',
    ': > "$1/etc/machine-id"',
    'printf "# lab hosts reach no DNS server\\n" > "$1/etc/resolv.conf"',
    'printf "LANG=C.UTF-8\\n" > "$1/etc/default/locale"',
    'printf "HostKey /etc/ssh/ssh_host_ed25519_key\\nPermitRootLogin prohibit-password\\n'
    'PasswordAuthentication no\\nKbdInteractiveAuthentication no\\n"'
    ' > "$1/etc/ssh/sshd_config.d/tierkit-lab.conf"',
    'mkdir -p "$1/opt/tierkit"',
)


def image_recipe() -> dict[str, Any]:
    """What the image depends on (its cache key)."""
    return {
        "suite": SUITE,
        "mirrors": [MIRROR, SECURITY_MIRROR],
        "variant": "minbase",
        "packages": sorted(set(IMAGE_PACKAGES)),
        "customize": list(CUSTOMIZE_STEPS),
    }


def image_path() -> Path:
    """The cache directory of the image for the current recipe (built or not)."""
    return keyed_path("lab-image", image_recipe())


def rootfs(image: Path) -> Path:
    """The root filesystem inside an image's cache directory."""
    return image / "rootfs"


def image_ready() -> bool:
    return is_ready(image_path())


def mmdebstrap_command(root: Path, recipe: dict[str, Any]) -> list[str]:
    mirror, security = recipe["mirrors"]
    suite = recipe["suite"]
    cmd = [
        "mmdebstrap", f"--variant={recipe['variant']}", "--mode=root", "--format=directory",
        "--include=" + ",".join(recipe["packages"]),
        "--skip=cleanup/apt/lists",  # keep package lists so the apt module can resolve names
    ]
    cmd += [f"--customize-hook={step}" for step in recipe["customize"]]
    return cmd + [
        suite, str(root),
        f"deb {mirror} {suite} main",
        f"deb {mirror} {suite}-updates main",
        f"deb {security} {suite}-security main",
    ]


def ensure_image() -> Path:
    """The image's root filesystem, building it first (about a minute) if this recipe has none."""
    for tool in ("mmdebstrap", "systemd-nspawn"):
        if not any(Path(d, tool).exists() for d in os.environ.get("PATH", "").split(":") if d):
            raise TierkitError(f"lab image: {tool} is not installed; run scripts/setup.sh "
                               f"(apt-get install mmdebstrap systemd-container)")
    recipe = image_recipe()
    path = image_path()
    log = build_log(path.name)

    def build(work: Path) -> None:
        run_logged(mmdebstrap_command(rootfs(work), recipe), log, what="lab image")

    return rootfs(ensure_dir(path, recipe, build))
