"""Recipe-keyed caches under /var/cache/tierkit: one builder at a time, never a half-built result.

Every cached thing (wheelhouse, vLLM venv, tiny model, ...) lives at `<root>/<name>-<key>`, where
`key` hashes the recipe that produced it, so a changed recipe builds anew and a warm machine reuses
what it has. A directory counts as built only once it holds `READY_FILE` (the recipe, build time
and duration); `ensure_dir` writes it last, so an interrupted build is never mistaken for a cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tierkit.errors import TierkitError

CACHE_ROOT_ENV = "TIERKIT_CACHE_DIR"
DEFAULT_CACHE_ROOT = Path("/var/cache/tierkit")
READY_FILE = ".tierkit-ready.json"


def cache_root() -> Path:
    """Where caches live: $TIERKIT_CACHE_DIR, else /var/cache/tierkit."""
    return Path(os.environ.get(CACHE_ROOT_ENV) or DEFAULT_CACHE_ROOT)


def recipe_key(recipe: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able recipe (key order does not matter)."""
    blob = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def keyed_path(name: str, recipe: Mapping[str, Any]) -> Path:
    """`<cache root>/<name>-<recipe key>`."""
    return cache_root() / f"{name}-{recipe_key(recipe)}"


def is_ready(path: Path) -> bool:
    """True when `path` was built to the end by `ensure_dir`."""
    return (path / READY_FILE).is_file()


def ready_info(path: Path) -> dict[str, Any] | None:
    """What `ensure_dir` recorded about a finished build (recipe, built_at, seconds), or None."""
    try:
        return json.loads((path / READY_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def dir_size(path: Path) -> int:
    """Bytes of the regular files under `path` (symlinks not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            total += st.st_size
    return total


def writable_dir(path: Path) -> Path:
    """Create `path` if needed, or fail with one line naming the cache root and the fix."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is not writable")
    except OSError as exc:
        raise TierkitError(
            f"cache: cannot write {path} ({exc.strerror or exc}); run as root, or point "
            f"${CACHE_ROOT_ENV} at a writable directory"
        ) from None
    return path


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for building `path` (a `.<name>.lock` file beside it)."""
    writable_dir(path.parent)
    with open(path.parent / f".{path.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_dir(
    path: Path,
    recipe: Mapping[str, Any],
    build: Callable[[Path], None],
    *,
    relocatable: bool = True,
) -> Path:
    """Build `path` with `build(work_dir)` unless it is already built; return `path`.

    relocatable=True: `build` fills a temporary sibling that is renamed into place when done,
    so `path` appears whole or not at all. relocatable=False (a venv, whose files name their own
    location): `build` works in `path` itself and the ready file is written last; a leftover
    from an interrupted build is removed first. Either way a failed build leaves nothing behind,
    and concurrent callers wait on a lock so the build runs once.
    """
    if is_ready(path):
        return path
    with locked(path):
        if is_ready(path):  # another process finished it while we waited
            return path
        for stale in path.parent.glob(f".{path.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if path.exists():
            shutil.rmtree(path)
        work = path.parent / f".{path.name}.tmp-{os.getpid()}" if relocatable else path
        work.mkdir(parents=True)
        started = time.monotonic()
        try:
            build(work)
            record = {
                "recipe": dict(recipe),
                "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(time.monotonic() - started, 1),
            }
            (work / READY_FILE).write_text(json.dumps(record, indent=2) + "\n")
            if relocatable:
                os.rename(work, path)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return path


def build_log(name: str) -> Path:
    """The log file a build step of cache `name` writes to (`<root>/logs/<name>.log`)."""
    return writable_dir(cache_root() / "logs") / f"{name}.log"


def log_tail(log: Path, lines: int = 15) -> str:
    """The last lines of a log, joined with ' | ' so an error stays on one line."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def run_logged(
    cmd: list[str], log: Path, *, what: str, env: Mapping[str, str] | None = None
) -> None:
    """Run one build step, appending its output to `log`; on failure raise a one-line error."""
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        raise TierkitError(
            f"{what}: `{' '.join(cmd[:4])} ...` exited {proc.returncode} ({log_tail(log, 5)});"
            f" see {log}"
        )
