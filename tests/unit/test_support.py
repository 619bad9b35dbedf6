"""The support matrix (roles/support/vars/, tierkit/support.py): its rules, the package
names it renders against the names NVIDIA publishes, the roles' defaults against it, and the
README's tables against `tierkit support`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tierkit import support

ROOT = Path(__file__).resolve().parents[2]
MATRIX = support.load()


def test_every_os_entry_is_complete():
    assert set(MATRIX["os"]) == {"ubuntu2204", "ubuntu2404", "debian12"}
    for key, entry in MATRIX["os"].items():
        assert entry["naming"] in MATRIX["support_naming"], key
        assert set(entry["archs"]) == {"x86_64", "sbsa"}
        assert entry["python_packages"] == [f"python{entry['python']}", f"python{entry['python']}-venv",
                                            f"python{entry['python']}-dev"]


def test_ubuntu_2204_gets_python_311_not_its_own_310():
    assert MATRIX["os"]["ubuntu2204"]["python"] == "3.11"


@pytest.mark.parametrize("distribution,version,key", [
    ("Ubuntu", "22.04", "ubuntu2204"), ("Ubuntu", "24.04", "ubuntu2404"), ("Debian", "12.7", "debian12"),
])
def test_os_key(distribution, version, key):
    assert support.os_key(distribution, version) == key


# Names from NVIDIA's Driver Installation Guide "Recent Updates" (branch 590 renames), its Ubuntu
# page, and NVIDIA/gpu-driver-container ubuntu22.04/ubuntu24.04 install.sh (Fabric Manager and
# NSCQ at 580), as docs/nvidia.md records them:
# https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/recent-updates.html
# https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/ubuntu.html
# https://github.com/NVIDIA/gpu-driver-container/blob/main/ubuntu24.04/install.sh
UBUNTU_NAMES = {
    ("580", "compute_open"): ["libnvidia-compute-580", "nvidia-dkms-580-open"],
    ("580", "compute_proprietary"): ["libnvidia-compute-580", "nvidia-dkms-580"],
    ("580", "full_open"): ["nvidia-open-580"],
    ("580", "full_proprietary"): ["cuda-drivers-580"],
    ("580", "pinning"): "nvidia-driver-pinning-580",
    ("580", "fabricmanager"): ["nvidia-fabricmanager", "libnvidia-nscq"],
    ("570", "full_open"): ["nvidia-open-570"],
    ("570", "fabricmanager"): ["nvidia-fabricmanager-570", "libnvidia-nscq-570"],
    ("590", "compute_open"): ["libnvidia-compute", "nvidia-dkms-open"],
    ("590", "compute_proprietary"): ["libnvidia-compute", "nvidia-dkms"],
    ("590", "full_open"): ["nvidia-open"],
    ("590", "full_proprietary"): ["cuda-drivers"],
    ("590", "pinning"): "nvidia-driver-pinning-590",
    ("590", "fabricmanager"): ["nvidia-fabricmanager", "libnvidia-nscq"],
}
# NVIDIA's Driver Installation Guide, Debian page:
# https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/debian.html
DEBIAN_NAMES = {
    "compute_open": ["nvidia-driver-cuda", "nvidia-kernel-open-dkms"],
    "compute_proprietary": ["nvidia-driver-cuda", "nvidia-kernel-dkms"],
    "full_open": ["nvidia-open"],
    "full_proprietary": ["cuda-drivers"],
}


@pytest.mark.parametrize("os_key", ["ubuntu2204", "ubuntu2404"])
@pytest.mark.parametrize("branch,kind", sorted(UBUNTU_NAMES))
def test_ubuntu_package_names(os_key, branch, kind):
    rules = MATRIX["support_naming"][MATRIX["os"][os_key]["naming"]]
    assert support.nvidia_packages(rules, branch, kind) == UBUNTU_NAMES[branch, kind]


@pytest.mark.parametrize("branch", ["580", "590"])
@pytest.mark.parametrize("kind", sorted(DEBIAN_NAMES))
def test_debian_package_names_do_not_carry_the_branch(branch, kind):
    rules = MATRIX["support_naming"]["debian"]
    assert support.nvidia_packages(rules, branch, kind) == DEBIAN_NAMES[kind]
    assert support.nvidia_packages(rules, branch, "pinning") == f"nvidia-driver-pinning-{branch}"


def test_the_driver_list_starts_with_the_branch_lock():
    packages = support.driver_packages(MATRIX, MATRIX["os"]["ubuntu2404"], "580")
    assert packages == ["nvidia-driver-pinning-580", "libnvidia-compute-580", "nvidia-dkms-580-open"]
    full = support.driver_packages(MATRIX, MATRIX["os"]["debian12"], "580", open_modules=False, compute_only=False)
    assert full == ["nvidia-driver-pinning-580", "cuda-drivers"]


def test_unknown_kind_and_branch_are_named():
    with pytest.raises(support.SupportError, match="unknown package kind 'gl'"):
        support.nvidia_packages(MATRIX["support_naming"]["ubuntu"], "580", "gl")
    with pytest.raises(support.SupportError, match="unknown driver branch 560"):
        support.branch_runs_cuda(MATRIX, "560", "13.0")


def test_cuda_minimum_driver_is_the_majors_lowest():
    table = MATRIX["support_cuda_min_driver"]
    assert support.cuda_min_driver(table, "13.0") == "580.65.06"
    assert support.cuda_min_driver(table, "13.2") == "580.65.06"  # minor version compatibility
    assert support.cuda_min_driver(table, "12.9") == "570.26"
    with pytest.raises(support.SupportError, match="CUDA 11.8"):
        support.cuda_min_driver(table, "11.8")


def test_versions_compare_numerically():
    assert support.version_at_least("580.159.03", "580.65.06")
    assert not support.version_at_least("570.133.20", "580.65.06")
    assert support.version_at_least("590.44.01", "580.65.06")


def test_branches_and_cuda_majors():
    assert support.branch_runs_cuda(MATRIX, "580", "13.0")
    assert support.branch_runs_cuda(MATRIX, "580", "12.8")
    assert not support.branch_runs_cuda(MATRIX, "570", "13.0")


def test_defaults_agree_with_each_other():
    branch = MATRIX["support_default_branch"]
    assert branch == "580"
    assert MATRIX["support_default_driver_version"].split(".")[0] == branch
    vllm = MATRIX["support_vllm"][MATRIX["support_default_vllm"]]
    assert support.branch_runs_cuda(MATRIX, branch, vllm["cuda"])
    assert support.version_at_least(MATRIX["support_default_driver_version"],
                                    support.cuda_min_driver(MATRIX["support_cuda_min_driver"], vllm["cuda"]))
    for key, entry in MATRIX["os"].items():
        assert support.python_allowed(vllm["requires_python"], entry["python"]), key


def test_the_vllm_role_installs_the_matrix_vllm():
    defaults = yaml.safe_load((ROOT / "roles/vllm/defaults/main.yml").read_text())
    assert defaults["vllm_version"] == MATRIX["support_default_vllm"]


def test_readme_tables_are_the_matrix():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- support-matrix:begin -->\n(.*?)<!-- support-matrix:end -->", readme, re.S)
    assert block is not None, "README.md lost its support-matrix markers"
    assert block.group(1) == support.markdown(MATRIX), "README is stale: paste the output of `tierkit support`"


def _component_rule(name: str) -> tuple[re.Pattern[str], str]:
    tasks = yaml.safe_load((ROOT / "roles/nvidia_repo/tasks/main.yml").read_text())
    task = next(t for t in tasks if t["name"] == name)["ansible.builtin.replace"]
    return re.compile(task["regexp"].replace("{{ item }}", "contrib"), re.M), task["replace"].replace("{{ item }}", "contrib")


def test_contrib_joins_debian_one_line_entries_once():
    pattern, replacement = _component_rule("Add the components to one-line Debian entries")
    text = ("deb http://deb.debian.org/debian bookworm main\n"
            "deb [arch=amd64] http://security.debian.org/debian-security bookworm-security main non-free-firmware\n"
            "deb http://deb.debian.org/debian bookworm-updates main contrib\n"
            "deb https://download.docker.com/linux/debian bookworm stable\n"
            "# deb http://deb.debian.org/debian bookworm main\n")
    once = pattern.sub(replacement, text)
    assert once.splitlines() == [
        "deb http://deb.debian.org/debian bookworm main contrib",
        "deb [arch=amd64] http://security.debian.org/debian-security bookworm-security main non-free-firmware contrib",
        "deb http://deb.debian.org/debian bookworm-updates main contrib",
        "deb https://download.docker.com/linux/debian bookworm stable",
        "# deb http://deb.debian.org/debian bookworm main",
    ]
    assert pattern.sub(replacement, once) == once  # idempotent


def test_contrib_joins_deb822_components_once():
    pattern, replacement = _component_rule("Add the components to deb822 Debian entries")
    text = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main non-free-firmware\n"
    once = pattern.sub(replacement, text)
    assert "Components: main non-free-firmware contrib\n" in once
    assert pattern.sub(replacement, once) == once
