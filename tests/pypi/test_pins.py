"""The pins agree (a PyPI round trip): the support matrix's vLLM pin resolves on PyPI for every
supported OS's Python, its Requires-Python and torch are what the matrix says, the CUDA its torch
pulls (nvidia-*-cuNN wheels, cuda-toolkit, or a +cuNNN local version) is the matrix's, and the
default driver branch runs that CUDA. Bumping one pin without the other fails here with a message
naming both.

pip runs with --isolated (no site configuration: this machine's find-links and local indexes
carry CPU builds of torch that would stand in for PyPI's), --no-deps (one package at a time) and
--dry-run --report, so nothing is downloaded beyond metadata and nothing is installed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tierkit import support

pytestmark = pytest.mark.pypi

MATRIX = support.load()
PLATFORM = "manylinux_2_28_x86_64"
CUDA_SUFFIX = re.compile(r"-cu(\d+)$")


@cache
def resolve(requirement: str, python: str, target: str) -> dict[str, Any]:
    """pip's report for one package (no dependencies) as PyPI offers it to `python` on Linux x86_64."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--no-deps", "--ignore-installed",
         "--only-binary=:all:", "--python-version", python, "--platform", PLATFORM, "--target", target,
         "--report", "-", "--quiet", requirement],
        capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail(f"pip cannot install {requirement} for Python {python} ({PLATFORM}): "
                    f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    (item,) = json.loads(done.stdout)["install"]
    return item["metadata"]


def cuda_major(torch_metadata: dict[str, Any]) -> int:
    """The CUDA major a torch wheel runs on: its +cuNNN local version, or the cuNN its CUDA
    runtime wheels carry (nvidia-cublas-cu12, cuda-toolkit==13.x)."""
    local = re.search(r"\+cu(\d+)", torch_metadata["version"])
    if local:
        return int(local.group(1)[:-1])
    majors = set()
    for line in torch_metadata.get("requires_dist", []):
        req = Requirement(line)
        if (m := CUDA_SUFFIX.search(req.name)) is not None:
            majors.add(int(m.group(1)))
        elif req.name == "cuda-toolkit":
            majors.update(int(s.version.split(".")[0]) for s in req.specifier)
    assert len(majors) == 1, f"torch {torch_metadata['version']}: no single CUDA major in its requirements ({majors})"
    return majors.pop()


@pytest.mark.parametrize("vllm", sorted(MATRIX["support_vllm"]))
@pytest.mark.parametrize("os_key", sorted(MATRIX["os"]))
def test_vllm_resolves_for_every_supported_python(vllm, os_key, tmp_path_factory):
    python = MATRIX["os"][os_key]["python"]
    meta = resolve(f"vllm=={vllm}", python, str(tmp_path_factory.getbasetemp() / "target"))
    assert meta["version"] == vllm
    wanted = MATRIX["support_vllm"][vllm]["requires_python"]
    assert support.python_allowed(meta["requires_python"], python), (
        f"vllm=={vllm} requires Python {meta['requires_python']}, and {MATRIX['os'][os_key]['name']} "
        f"runs it on Python {python} (support matrix)")
    assert SpecifierSet(meta["requires_python"]) == SpecifierSet(wanted), (
        f"vllm=={vllm} on PyPI requires Python {meta['requires_python']}; the support matrix says {wanted}")


@pytest.mark.parametrize("vllm", sorted(MATRIX["support_vllm"]))
def test_the_default_driver_runs_the_wheels_cuda(vllm, tmp_path_factory):
    entry = MATRIX["support_vllm"][vllm]
    target = str(tmp_path_factory.getbasetemp() / "target")
    python = min(os["python"] for os in MATRIX["os"].values())
    meta = resolve(f"vllm=={vllm}", python, target)
    torch_pins = [Requirement(r) for r in meta.get("requires_dist", []) if Requirement(r).name == "torch"]
    assert len(torch_pins) == 1 and str(torch_pins[0].specifier) == f"=={entry['torch']}", (
        f"vllm=={vllm} requires {', '.join(map(str, torch_pins))}; the support matrix says torch=={entry['torch']}")
    torch = resolve(f"torch=={entry['torch']}", python, target)
    major = cuda_major(torch)
    assert major == int(entry["cuda"].split(".")[0]), (
        f"vllm=={vllm} pulls torch=={entry['torch']}, built for CUDA {major}; the support matrix says CUDA {entry['cuda']}")
    branch = MATRIX["support_default_branch"]
    assert support.branch_runs_cuda(MATRIX, branch, entry["cuda"]), (
        f"vllm=={vllm} (support_default_vllm) needs CUDA {major}, and driver branch {branch} "
        f"(support_default_branch) runs CUDA {MATRIX['support_branches'][branch]['cuda']} at most")
    minimum = support.cuda_min_driver(MATRIX["support_cuda_min_driver"], entry["cuda"])
    assert support.version_at_least(MATRIX["support_default_driver_version"], minimum), (
        f"vllm=={vllm} needs a driver >= {minimum} for CUDA {entry['cuda']}; the default driver is "
        f"{MATRIX['support_default_driver_version']} (support_default_driver_version)")


def test_cuda_major_reads_local_versions_and_runtime_wheels():
    assert cuda_major({"version": "2.8.0+cu128", "requires_dist": []}) == 12
    assert cuda_major({"version": "2.13.0", "requires_dist": ['nvidia-nccl-cu13==2.29.7; platform_system == "Linux"',
                                                             "cuda-toolkit[cublas]==13.0.3", "filelock"]}) == 13
