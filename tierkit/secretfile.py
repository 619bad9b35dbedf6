"""Secrets tierkit generates and keeps on this machine: made once, mode 0600 from creation."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path`, or a new one from `make()` written there (mode 0600, never wider),
    so every later run gets the same value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    value = make()
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value
