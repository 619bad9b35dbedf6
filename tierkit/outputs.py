"""Output files named on the command line, checked before the work that fills them.

A run that takes minutes must not fail at its end because its report cannot be written:
`check_output_file` refuses, with one line, a path that is a directory, sits in a directory
that does not exist or cannot be written, or lies on a file system with less than
`MIN_FREE_BYTES` free.
"""

from __future__ import annotations

import os
from pathlib import Path

from tierkit.errors import TierkitError
from tierkit.safe_yaml import excerpt

MIN_FREE_BYTES = 1 << 20  # a smoke report is tens of KiB; a disk this full fails everything else too


def check_output_file(flag: str, path: Path) -> None:
    """One-line TierkitError unless `path` can be written as a file now."""
    shown = excerpt(str(path), 120)
    if path.is_dir():
        raise TierkitError(f"{flag}: {shown} is a directory; give a file path, e.g. {path / 'out.json'}")
    parent = path.parent
    if not parent.is_dir():
        raise TierkitError(f"{flag}: {excerpt(str(parent), 120)} is not a directory; write the file somewhere that exists")
    if path.exists() and not path.is_file():
        raise TierkitError(f"{flag}: {shown} is not a regular file; give a file name")
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK):
        raise TierkitError(f"{flag}: {shown} is not writable by this user; pick another path")
    fs = os.statvfs(parent)
    if fs.f_bavail * fs.f_frsize < MIN_FREE_BYTES:
        raise TierkitError(f"{flag}: the file system of {excerpt(str(parent), 120)} is full "
                           f"(under {MIN_FREE_BYTES >> 20} MiB free); free space or pick another path")
