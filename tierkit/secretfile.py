"""Secrets tierkit generates and keeps on this machine: made once, mode 0600 from creation."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path`, or a new one from `make()` written there (mode 0600, never wider),
    so every later run gets the same value. The new secret is written whole to a temporary file,
    then linked to `path` in one step: a run killed meanwhile leaves no empty or partial secret,
    and of two runs at once the first link wins (an empty file an older tierkit left is replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = None
    if existing:
        return existing
    value = make()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        if existing is None:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return path.read_text().strip() or value
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return value
