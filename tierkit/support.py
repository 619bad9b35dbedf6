"""tierkit's support matrix: which OS, driver branch, CUDA, Python and vLLM go together.

The data lives in the support role (roles/support/vars/: matrix.yml and one file
per OS under os/), so the roles and tierkit read the same files. This module is also that role's
filter plugin (roles/support/filter_plugins/tierkit_support.py is a symlink to it), so it
needs nothing beyond the standard library, PyYAML and packaging, which Ansible itself requires.

Filters: `nvidia_packages(naming_rules, branch, kind)` names the driver packages of one kind for
a branch; `cuda_min_driver(table, cuda)` the lowest driver a CUDA release's major runs on;
`version_at_least(a, b)` compares dotted driver versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from packaging.specifiers import SpecifierSet

MATRIX_DIR = Path(__file__).resolve().parent.parent / "roles" / "support" / "vars"
KINDS = ("compute_open", "compute_proprietary", "full_open", "full_proprietary", "pinning", "fabricmanager")


class SupportError(ValueError):
    """The matrix has no answer for the question asked (unknown branch, OS, CUDA)."""


def load(directory: Path = MATRIX_DIR) -> dict[str, Any]:
    """matrix.yml's variables plus `os`: every OS file's support_os, by key."""
    data = yaml.safe_load((directory / "matrix.yml").read_text())
    oses = [yaml.safe_load(p.read_text())["support_os"] for p in sorted((directory / "os").glob("*.yml"))]
    data["os"] = {entry["key"]: entry for entry in oses}
    return data


def os_key(distribution: str, version: str) -> str:
    """NVIDIA's repository directory name for an OS: Ubuntu 22.04 -> ubuntu2204, Debian 12.4 -> debian12."""
    name = distribution.lower()
    if name == "ubuntu":
        return name + version.replace(".", "")
    return name + version.split(".")[0]


def repo_arch(machine: str) -> str:
    """NVIDIA's repository directory for an architecture: aarch64 servers are `sbsa`."""
    return "sbsa" if machine in ("aarch64", "arm64") else machine


def _substitute(value: Any, branch: str) -> Any:
    if isinstance(value, list):
        return [item.replace("{b}", branch) for item in value]
    return value.replace("{b}", branch)


def nvidia_packages(naming_rules: list[dict[str, Any]], branch: str | int, kind: str) -> Any:
    """The package name(s) of `kind` for `branch` under one naming scheme's rules."""
    if kind not in KINDS:
        raise SupportError(f"unknown package kind {kind!r}; one of {', '.join(KINDS)}")
    number = int(branch)
    for rule in naming_rules:
        if number <= int(rule["max_branch"]):
            return _substitute(rule[kind], str(number))
    raise SupportError(f"no package names for driver branch {branch}")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in str(text).split("."))


def version_at_least(version: str, minimum: str) -> bool:
    """Dotted driver versions compared part by part: 580.95.05 >= 580.65.06."""
    return _version(version) >= _version(minimum)


def cuda_min_driver(table: dict[str, str], cuda: str) -> str:
    """The lowest driver that runs code built for `cuda`: the smallest minimum listed for its
    major (minor version compatibility covers the later minors of a major, never a new major)."""
    major = str(cuda).split(".")[0]
    minimums = [driver for release, driver in table.items() if release.split(".")[0] == major]
    if not minimums:
        raise SupportError(f"no minimum driver known for CUDA {cuda}")
    return min(minimums, key=_version)


def branch_runs_cuda(matrix: dict[str, Any], branch: str, cuda: str) -> bool:
    """Whether a driver branch runs code built for `cuda`: drivers run older CUDA majors, and
    later minors of their own major through minor version compatibility; never a newer major."""
    entry = matrix["support_branches"].get(str(branch))
    if entry is None:
        raise SupportError(f"unknown driver branch {branch}; known: {', '.join(matrix['support_branches'])}")
    return _version(entry["cuda"])[0] >= _version(cuda)[0]


def python_allowed(requires_python: str, python: str) -> bool:
    """Whether a Requires-Python specifier admits a Python version (e.g. ">=3.11,<3.15", "3.10")."""
    return SpecifierSet(requires_python).contains(python)


def driver_packages(matrix: dict[str, Any], os_entry: dict[str, Any], branch: str,
                    open_modules: bool = True, compute_only: bool = True) -> list[str]:
    """The pinning package, then the driver packages, for an OS and branch (the role's order)."""
    rules = matrix["support_naming"][os_entry["naming"]]
    kind = ("compute_" if compute_only else "full_") + ("open" if open_modules else "proprietary")
    return [nvidia_packages(rules, branch, "pinning"), *nvidia_packages(rules, branch, kind)]


class FilterModule:
    """The support role's filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "nvidia_packages": nvidia_packages,
            "cuda_min_driver": cuda_min_driver,
            "version_at_least": version_at_least,
        }


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(matrix: dict[str, Any]) -> str:
    """The README's support tables, rendered from the matrix (a unit test keeps them equal)."""
    branch = matrix["support_default_branch"]
    vllm = matrix["support_default_vllm"]
    lines = [
        _row(["OS", "arch", f"Python for vLLM {vllm}", f"driver {branch} packages (compute-only, open)",
              "Fabric Manager + NSCQ", "extra apt components", "has run"]),
        _row(["---"] * 7),
    ]
    for entry in matrix["os"].values():
        rules = matrix["support_naming"][entry["naming"]]
        lines.append(_row([
            entry["name"], ", ".join(entry["archs"]),
            f"{entry['python']} (`{' '.join(entry['python_packages'])}`)",
            "`" + " ".join(driver_packages(matrix, entry, branch)) + "`",
            "`" + " ".join(nvidia_packages(rules, branch, "fabricmanager")) + "`",
            ", ".join(entry["apt_components"]) or "-",
            "in the lab (x86_64); not on real hardware" if entry["lab_tested"] else "not yet",
        ]))
    lines += ["", _row(["driver branch", "CUDA", "status", "end of life"]), _row(["---"] * 4)]
    for name, info in matrix["support_branches"].items():
        default = " (default)" if name == branch else ""
        lines.append(_row([name + default, info["cuda"], info["status"], str(info["end_of_life"])]))
    lines += ["", _row(["vLLM", "Requires-Python", "wheel CUDA", "torch", "needs driver"]), _row(["---"] * 5)]
    for version, info in matrix["support_vllm"].items():
        minimum = cuda_min_driver(matrix["support_cuda_min_driver"], info["cuda"])
        lines.append(_row([version, f"`{info['requires_python']}`", info["cuda"], info["torch"], f">= {minimum}"]))
    return "\n".join(lines) + "\n"
