"""The machine's mount table, and unmounting whatever the lab left under a directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tierkit.errors import TierkitError


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mount_points() -> list[Path]:
    """Every mount point in this mount namespace, in mount order."""
    with open("/proc/self/mountinfo") as handle:
        return [Path(_unescape(line.split()[4])) for line in handle]


def is_mount_point(path: Path) -> bool:
    return path in mount_points()


def under(root: Path) -> list[Path]:
    """Mount points at or below `root`, deepest first (the order to unmount them in)."""
    found = {p for p in mount_points() if p == root or root in p.parents}
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise TierkitError(f"lab: `mount {' '.join(args)}` failed ({proc.stderr.strip()}); "
                           f"run as root on a kernel with overlayfs")


def unmount_under(root: Path) -> None:
    """Unmount everything at or below `root`; a busy mount is detached lazily."""
    for point in under(root):
        if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)
