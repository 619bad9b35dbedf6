"""The stand-in for NVIDIA's apt repository (tierkit/lab/standin_repo.py): real .debs, a signed
Release apt verifies, NVIDIA's package names and versions; checked with this machine's apt."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from tierkit.lab import standin_repo
from tierkit.lab.sim import SIM_DRIVER_BRANCH, SIM_DRIVER_VERSION

# NVIDIA's debian12 repository's names for the 580 branch (compute-only open driver, pinning
# package, Fabric Manager and NSCQ): docs/nvidia.md, "Package names".
DEBIAN12_NAMES = ["nvidia-driver-pinning-580", "nvidia-driver-cuda", "nvidia-kernel-open-dkms",
                  "nvidia-kernel-dkms", "nvidia-open", "cuda-drivers", "nvidia-fabricmanager", "libnvidia-nscq"]


@pytest.fixture
def repo(tmp_cache: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The repository built for a file:// URL, and apt options that read only it."""
    link = tmp_path / "repo"
    root = standin_repo.ensure_repo(f"file://{link}")
    link.symlink_to(root)
    keyring = tmp_path / "keyring"
    subprocess.run(["dpkg-deb", "-x", str(root / standin_repo.KEYRING_DEB), str(keyring)], check=True)
    source = next((keyring / "etc/apt/sources.list.d").glob("cuda-*.list")).read_text()
    sources = tmp_path / "sources.list"
    sources.write_text(source.replace(standin_repo.KEYRING_PATH, str(keyring) + standin_repo.KEYRING_PATH))
    for d in ("lists/partial", "cache/archives/partial", "prefs"):
        (tmp_path / d).mkdir(parents=True)
    opts = tmp_path / "apt.conf"
    opts.write_text(f'Dir::Etc::sourcelist "{sources}"; Dir::Etc::sourceparts "-"; '
                    f'Dir::State::Lists "{tmp_path}/lists"; Dir::Cache "{tmp_path}/cache"; '
                    f'Dir::Etc::preferencesparts "{tmp_path}/prefs"; APT::Sandbox::User "root";\n')
    return root, opts


def apt(opts: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["apt-get" if args[0] == "update" else "apt-cache", "-c", str(opts), *args],
                          capture_output=True, text=True, env={"APT_CONFIG": str(opts), "PATH": "/usr/bin:/bin"})


def test_apt_verifies_the_release_and_sees_nvidia_names(repo):
    root, opts = repo
    update = apt(opts, "update")
    assert update.returncode == 0 and "NO_PUBKEY" not in update.stderr and "W:" not in update.stderr, update.stderr
    assert SIM_DRIVER_BRANCH == "580"
    for name in DEBIAN12_NAMES:
        assert f"Candidate: {SIM_DRIVER_VERSION}-1" in apt(opts, "policy", name).stdout, name
    nccl = apt(opts, "policy", "libnccl2", "libnccl-dev").stdout
    assert nccl.count(f"Candidate: 2.26.2-1+cuda{standin_repo.NCCL_CUDA_VERSION}") == 2


def test_a_tampered_index_is_refused(repo):
    root, opts = repo
    tampered = (root / "Packages").read_text().replace("tierkit stand-in", "tampered")
    (root / "Packages").write_text(tampered)
    (root / "Packages.gz").write_bytes(gzip.compress(tampered.encode()))
    update = apt(opts, "update")
    assert update.returncode != 0 and "Hash Sum mismatch" in update.stderr + update.stdout


def test_driver_answers_only_after_its_module_loads(repo, tmp_path):
    root, _ = repo
    tree = tmp_path / "driver"
    for name in ("nvidia-driver-cuda", "nvidia-kernel-open-dkms"):
        subprocess.run(["dpkg-deb", "-x", str(root / f"{name}_{SIM_DRIVER_VERSION}-1_amd64.deb"), str(tree)], check=True)
    wrapper = (tree / "usr/bin/nvidia-smi").read_text()
    assert standin_repo.MODULE_FLAG in wrapper and "exit 9" in wrapper
    unit = (tree / "lib/systemd/system" / standin_repo.MODULE_UNIT).read_text()
    assert "WantedBy=sysinit.target" in unit
    deb = root / f"nvidia-kernel-open-dkms_{SIM_DRIVER_VERSION}-1_amd64.deb"
    control = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True).stdout
    assert "Conflicts: nvidia-kernel-dkms\n" in control


def test_keyring_writes_the_debian12_source(repo, tmp_path):
    root, _ = repo
    tree = tmp_path / "keyring-tree"
    subprocess.run(["dpkg-deb", "-x", str(root / standin_repo.KEYRING_DEB), str(tree)], check=True)
    assert [p.name for p in (tree / "etc/apt/sources.list.d").iterdir()] == ["cuda-debian12-x86_64.list"]
    assert (tree / standin_repo.KEYRING_PATH.lstrip("/")).stat().st_size > 0
