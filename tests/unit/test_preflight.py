"""Preflight decisions on gathered facts (tierkit/preflight.py, the preflight role's filter):
each refusal, its one line naming the fix, and a clean host passing."""

from __future__ import annotations

import pytest

from tierkit import preflight

GIB = 1024 ** 3
CLEAN = {
    "os": "Ubuntu 22.04", "arch": "x86_64", "supported_archs": ["x86_64", "sbsa"],
    "python": "3.11", "python_present": True, "python_installable": True, "vllm": "0.32.0",
    "driver_active": "", "driver_minimum": "580.65.06", "wheel_cuda": "13.0", "driver_replace": False,
    "secure_boot": False, "dkms_key_enrolled": False, "cache_path": "/opt/vllm/huggingface",
    "mounts": [{"mount": "/", "size_available": 50 * GIB}, {"mount": "/opt", "size_available": 500 * GIB},
               {"mount": "/optional", "size_available": 1 * GIB}],
    "download_bytes": 141 * GIB, "kernel": "6.8.0-45-generic", "headers_present": False,
    "headers_installable": True, "lock_held": False, "lock_wait_s": 120,
}


def lines(**changes):
    return preflight.problems({**CLEAN, **changes})


def test_a_clean_host_passes():
    assert lines() == []


def test_unsupported_os():
    (line,) = lines(os="Rocky 9.4", supported_archs=[], python="")
    assert line.startswith("Rocky 9.4 is not supported; use Ubuntu 22.04, Ubuntu 24.04 or Debian 12")


def test_unsupported_architecture():
    (line,) = lines(arch="ppc64le")
    assert line == "architecture ppc64le is not supported on Ubuntu 22.04; use x86_64 or sbsa"


def test_no_python_for_vllm():
    assert lines(python_present=False) == []  # apt installs it
    (line,) = lines(python_present=False, python_installable=False)
    assert "vLLM 0.32.0 needs Python 3.11" in line and "jammy-updates, universe" in line


def test_an_old_driver_is_refused_a_new_enough_one_kept():
    (line,) = lines(driver_active="570.133.20", headers_installable=True)
    assert line.startswith("NVIDIA driver 570.133.20 is active, and vLLM 0.32.0's wheel (CUDA 13.0) needs >= 580.65.06")
    assert "preflight_driver_replace: true" in line
    assert lines(driver_active="570.133.20", driver_replace=True) == []
    assert lines(driver_active="580.95.05", headers_installable=False) == []  # kept: no headers needed


def test_secure_boot_without_an_enrolled_key():
    (line,) = lines(secure_boot=True)
    assert line.startswith("Secure Boot is on and DKMS's signing key is not enrolled")
    assert "mokutil --import /var/lib/dkms/mok.pub" in line
    assert lines(secure_boot=True, dkms_key_enrolled=True) == []
    assert lines(secure_boot=True, driver_active="580.159.03") == []  # nothing to build


def test_too_little_disk_for_the_weights():
    assert preflight.free_bytes(CLEAN["mounts"], "/opt/vllm/huggingface") == 500 * GIB
    assert preflight.free_bytes(CLEAN["mounts"], "/srv/models") == 50 * GIB
    (line,) = lines(cache_path="/srv/models")
    assert line == ("/srv/models: 50.0 GiB free, the weights need 169.2 GiB (141.0 GiB download x 1.2); "
                    "free space there or point the model cache at a larger disk")
    assert lines(cache_path="/srv/models", download_bytes=0) == []


def test_no_kernel_headers():
    (line,) = lines(headers_installable=False)
    assert line.startswith("no kernel headers for the running kernel 6.8.0-45-generic")
    assert lines(headers_installable=False, headers_present=True) == []


def test_held_dpkg_lock():
    (line,) = lines(lock_held=True)
    assert line.startswith("the dpkg lock stayed held for 120 s")


def test_every_problem_gets_its_own_line():
    assert len(lines(arch="ppc64le", python_present=False, python_installable=False, secure_boot=True,
                     cache_path="/srv/models", headers_installable=False, lock_held=True)) == 6


def test_missing_facts_are_named():
    with pytest.raises(ValueError, match="lack lock_held"):
        preflight.problems({k: v for k, v in CLEAN.items() if k != "lock_held"})
