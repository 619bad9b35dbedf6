"""The preflight play on a real lab host: a clean host passes and nothing changes; with faults
injected (an old driver in the simulated GPU set, a held dpkg lock, a weights download larger
than the disk) it prints one line per refusal, still changing nothing. A driver too old also
means the module must be built, and the lab host has no headers for its kernel: that refusal
shows too."""

from __future__ import annotations

import json

import pytest

from roles_support import lab_spec, sh
from tierkit import ansible
from tierkit import inventory as inv
from tierkit.lab import Lab
from tierkit.lab.sim import GPU_SET_PATH

pytestmark = pytest.mark.lab

NAME = "tkpre"
HOLD_LOCK = ("setsid python3 -c \"import fcntl, os, time; "
             "fd = os.open('/var/lib/dpkg/lock-frontend', os.O_RDWR | os.O_CREAT); "
             "fcntl.lockf(fd, fcntl.LOCK_EX); time.sleep(600)\" </dev/null >/dev/null 2>&1 &")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    lab = Lab.up(NAME, 1, "l40s", 1, "pcie", quiet=True)
    try:
        spec = lab_spec("single-gpu", lab, gpu={"model": "l40s", "count": 1})
        path = inv.write(inv.render(spec, lab.hosts), tmp_path_factory.mktemp(NAME) / "inventory")
        yield lab, lab.hosts[0].name, path
    finally:
        Lab.down(NAME)


def preflight(lab, path, **extravars) -> ansible.RunResult:
    return ansible.run_playbook("preflight", path, lab.hosts, extravars=extravars, show=None)


def test_a_clean_host_passes_and_nothing_changes(host):
    lab, name, path = host
    result = preflight(lab, path)
    assert result.ok, [f.message for f in result.failures]
    assert result.recap[name].changed == 0


def test_each_fault_prints_one_line_and_nothing_changes(host):
    lab, name, path = host
    gpu_set = json.loads(sh(lab, name, f"cat {GPU_SET_PATH}"))
    gpu_set["driver_version"] = "570.133.20"
    sh(lab, name, f"cat > {GPU_SET_PATH} <<'EOF'\n{json.dumps(gpu_set)}\nEOF")
    sh(lab, name, HOLD_LOCK)
    result = preflight(lab, path, preflight_download_bytes=10 ** 16, preflight_lock_timeout=5)
    lines = [f.message for f in result.failures]
    assert result.recap[name].changed == 0
    assert len(lines) == 4, lines
    assert lines[0].startswith("preflight: NVIDIA driver 570.133.20 is active, and vLLM 0.32.0's wheel (CUDA 13.0)")
    assert lines[1].startswith("preflight: /opt/vllm/huggingface: ") and "x 1.2" in lines[1]
    assert lines[2].startswith("preflight: no kernel headers for the running kernel")
    assert lines[3].startswith("preflight: the dpkg lock stayed held for 5 s")
