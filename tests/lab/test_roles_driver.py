"""The nvidia_driver role's install path, for real, against the stand-in for NVIDIA's debian12
repository (tierkit/lab/standin_repo.py): keyring and signed repository, the branch's pinning
package before the compute-only driver packages (Debian names), the version pin, the reboot
handler (the new driver answers only after a reboot, like a real kernel module),
nvidia-persistenced with persistence on across a further reboot, Fabric Manager and NSCQ held at
the driver's version on the NVSwitch host and never on the bridge host, idempotence."""

from __future__ import annotations

import pytest

from roles_support import failures, lab_spec, run, sh
from tierkit.lab import Lab
from tierkit.lab.sim import SIM_DRIVER_BRANCH, SIM_DRIVER_VERSION
from tierkit.lab.standin_repo import MODULE_FLAG

pytestmark = pytest.mark.lab

BOXES = {"switch": ("tkdsw", "h100-sxm"), "bridge": ("tkdbr", "h100-pcie")}
FM = ("nvidia-fabricmanager", "libnvidia-nscq")
DRIVER = (f"nvidia-driver-pinning-{SIM_DRIVER_BRANCH}", "nvidia-driver-cuda", "nvidia-kernel-open-dkms")


@pytest.fixture(scope="module", params=sorted(BOXES))
def installed(request, tmp_path_factory):
    """A 2-GPU host without a driver (its simulated nvidia-smi removed), configured once."""
    name, gpu = BOXES[request.param]
    lab = Lab.up(name, 1, gpu, 2, "nvlink", quiet=True)
    try:
        host = lab.hosts[0].name
        sh(lab, host, "rm -f /usr/bin/nvidia-smi")
        spec = lab_spec("multi-gpu", lab, gpu={"model": gpu, "count": 2}, serving={"tensor_parallel": 2})
        workdir = tmp_path_factory.mktemp(name)
        first = run(spec, lab, "drivers", workdir)
        yield request.param, lab, host, spec, workdir, first
    finally:
        Lab.down(name)


def test_driver_installs_from_the_repository_and_reboots(installed):
    kind, lab, host, _spec, _workdir, first = installed
    assert first.ok, failures(first)
    assert first.recap[host].changed >= 5  # keyring, pin, pinning package, driver, nouveau, persistenced
    for package in DRIVER:
        assert sh(lab, host, f"dpkg-query -W -f '${{Version}}' {package}") == f"{SIM_DRIVER_VERSION}-1"
    assert sh(lab, host, "dpkg-query -W -f '${Status}' nvidia-open", check=False) == ""  # compute only
    assert sh(lab, host, f"test -e {MODULE_FLAG} && echo loaded").strip() == "loaded"  # rebooted
    assert f"Pin: version {SIM_DRIVER_VERSION}-*" in sh(lab, host, "cat /etc/apt/preferences.d/tierkit-nvidia-driver")
    assert "blacklist nouveau" in sh(lab, host, "cat /etc/modprobe.d/tierkit-blacklist-nouveau.conf")
    versions = sh(lab, host, "nvidia-smi --query-gpu=driver_version,persistence_mode --format=csv,noheader")
    assert versions.splitlines() == [f"{SIM_DRIVER_VERSION}, Enabled"] * 2


def test_persistence_survives_a_reboot(installed):
    kind, lab, host, *_ = installed
    lab.fault(host, "stop")
    lab.relaunch(host)
    # SSH answers as soon as sshd runs; the daemon may need a moment longer at boot.
    modes = sh(lab, host, "for i in $(seq 30); do systemctl is-active -q nvidia-persistenced && break; sleep 1; done; "
                          "sleep 1; nvidia-smi --query-gpu=persistence_mode --format=csv,noheader")
    assert modes.splitlines() == ["Enabled"] * 2
    assert sh(lab, host, "systemctl is-enabled nvidia-persistenced").strip() == "enabled"


def test_fabric_manager_only_on_nvswitch(installed):
    kind, lab, host, *_ = installed
    fm_packages = [sh(lab, host, f"dpkg-query -W -f '${{Version}} ${{Status}}' {p}", check=False) for p in FM]
    fm_state = sh(lab, host, "systemctl is-active nvidia-fabricmanager", check=False).strip()
    if kind == "switch":
        assert fm_packages == [f"{SIM_DRIVER_VERSION}-1 hold ok installed"] * 2 and fm_state == "active"
    else:
        assert not any(v.endswith(" installed") for v in fm_packages) and fm_state != "active"


def test_pinned_driver_active_means_nothing_installed(installed):
    kind, lab, host, spec, workdir, first = installed
    second = run(spec, lab, "drivers", workdir)
    assert second.ok, failures(second)
    assert second.recap[host].changed == 0
