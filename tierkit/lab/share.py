"""The vLLM wheelhouse and the tiny model, read-only in every lab host under /opt/tierkit.

Each host binds one machine-wide directory, SHARE_DIR, read-only at /opt/tierkit. SHARE_DIR is a
shared mount, so whatever is mounted beneath it later propagates into hosts already running:
`publish()` mounts the wheelhouse and the model read-only at SHARE_DIR/wheelhouse and
SHARE_DIR/models/tiny-llama as soon as they exist, without restarting a host. The mount points
exist from the start (empty until published). The last `lab down` on the machine unmounts it all.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tierkit.cache import is_ready
from tierkit.lab import mounts
from tierkit.localvllm.tiny_model import ensure_tiny_model, tiny_model_path
from tierkit.localvllm.wheelhouse import ensure_wheelhouse, wheelhouse_path

GUEST_DIR = "/opt/tierkit"
WHEELHOUSE_AT = "wheelhouse"
TINY_MODEL_AT = "models/tiny-llama"


@dataclass(frozen=True)
class Shared:
    at: str  # below SHARE_DIR, and below /opt/tierkit in a host
    path: Callable[[], Path]  # where the cache lives (built or not)
    ensure: Callable[[], Path]  # build it if needed


SHARED = (
    Shared(WHEELHOUSE_AT, wheelhouse_path, ensure_wheelhouse),
    Shared(TINY_MODEL_AT, tiny_model_path, ensure_tiny_model),
)


def guest_path(at: str) -> str:
    """Where a shared item appears inside every lab host."""
    return f"{GUEST_DIR}/{at}"


def prepare(share_dir: Path) -> None:
    """The shared mount and its (empty) mount points."""
    for item in SHARED:
        (share_dir / item.at).mkdir(parents=True, exist_ok=True)
    if not mounts.is_mount_point(share_dir):
        mounts.mount("--bind", str(share_dir), str(share_dir))
        mounts.mount("--make-shared", str(share_dir))


def _bind_read_only(source: Path, target: Path, stage_parent: Path) -> None:
    """Mount `source` read-only at `target` in one step, as hosts must see it.

    A bind is made read-only by a remount, and a remount does not propagate: so the read-only
    bind is made in a private staging mount (outside the shared one) and then moved beneath
    the shared target.
    """
    stage = Path(tempfile.mkdtemp(prefix=".tierkit-stage-", dir=stage_parent))
    try:
        mounts.mount("--bind", str(stage), str(stage))
        mounts.mount("--make-private", str(stage))
        inner = stage / "x"
        inner.mkdir()
        mounts.mount("--bind", str(source), str(inner))
        mounts.mount("-o", "remount,bind,ro", str(inner))
        mounts.mount("--move", str(inner), str(target))
    finally:
        mounts.unmount_under(stage)
        for leftover in (stage / "x", stage):
            leftover.rmdir()


def build() -> None:
    """Build whatever shared cache is missing (minutes when cold)."""
    for item in SHARED:
        item.ensure()


def publish(share_dir: Path) -> dict[str, str | None]:
    """Mount each shared cache that is built; what is mounted where (None: not built yet)."""
    prepare(share_dir)
    published: dict[str, str | None] = {}
    for item in SHARED:
        target, path = share_dir / item.at, item.path()
        if not is_ready(path):
            published[item.at] = None
            continue
        if not mounts.is_mount_point(target):
            _bind_read_only(path, target, share_dir.parent)
        published[item.at] = str(path)
    return published


def release(share_dir: Path) -> None:
    mounts.unmount_under(share_dir)
