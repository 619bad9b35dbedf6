"""site.yml on two lab hosts (the failover stack's pair: 1 simulated RTX PRO 6000 each):
every stage runs, vLLM serves the tiny model through its systemd unit behind its firewall and
API key, and a second run changes nothing. Prints the wall time of both runs."""

from __future__ import annotations

import json
import time

import pytest

from roles_support import failures, in_switch, lab_spec, run, sh
from tierkit import inventory
from tierkit.lab import Lab

pytestmark = pytest.mark.lab

LAB = "tksite"
API_KEY = "tierkit-site-test-key"
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def site(tmp_path_factory, monkeypatch_module):
    """A 2-host lab configured once by site.yml (the first run is timed)."""
    monkeypatch_module.setenv("TIERKIT_API_KEY", API_KEY)
    lab = Lab.up(LAB, 2, "rtx-pro-6000", 1, "nvlink", runtime=True, quiet=True)
    try:
        spec = lab_spec("failover", lab)
        workdir = tmp_path_factory.mktemp("site")
        started = time.monotonic()
        first = run(spec, lab, "site", workdir)
        TIMES["first_run_s"] = round(time.monotonic() - started, 1)
        yield lab, spec, workdir, first
    finally:
        Lab.down(LAB)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def completion(lab: Lab, address: str, port: int, key: str | None) -> tuple[int, str]:
    body = json.dumps({"model": "tiny-llama", "prompt": "The lab", "max_tokens": 8, "temperature": 0})
    argv = ["curl", "-sS", "-m", "60", "-o", "-", "-w", "\n%{http_code}", "-H", "Content-Type: application/json",
            "-d", body, f"http://{address}:{port}/v1/completions"]
    if key:
        argv[1:1] = ["-H", f"Authorization: Bearer {key}"]
    done = in_switch(lab, argv, timeout=90)
    text, _, code = done.stdout.rpartition("\n")
    return int(code or 0), text


def test_first_run_configures_every_host(site):
    lab, _spec, _workdir, first = site
    assert first.ok, failures(first)
    assert set(first.recap) == {h.name for h in lab.hosts}


def test_vllm_serves_the_tiny_model_through_its_unit(site):
    lab, spec, *_ = site
    port = inventory.vllm_port(spec)  # behind HAProxy's serving port on this tier
    for host in lab.hosts:
        assert sh(lab, host.name, "systemctl is-active vllm").strip() == "active"
        assert sh(lab, host.name, "stat -c '%a %U' /etc/vllm/vllm.env").strip() == "600 root"
        assert API_KEY not in sh(lab, host.name, "systemctl show vllm -p ExecStart; ps -eo args")
        code, text = completion(lab, host.address, port, API_KEY)
        assert code == 200, text
        assert json.loads(text)["choices"][0]["text"].strip()
        assert completion(lab, host.address, port, None)[0] == 401


def test_port_answers_allowed_sources_only(site):
    lab, spec, *_ = site
    stranger = str(lab.subnet[250])
    in_switch(lab, ["ip", "addr", "add", f"{stranger}/{lab.subnet.prefixlen}", "dev", "br0"])
    try:
        target = f"http://{lab.hosts[0].address}:{inventory.vllm_port(spec)}/health"
        allowed = in_switch(lab, ["curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", target])
        blocked = in_switch(lab, ["curl", "-sS", "-m", "5", "--interface", stranger, target])
        assert allowed.stdout == "200"
        assert blocked.returncode != 0  # dropped: curl times out
        peer = sh(lab, lab.hosts[1].name, f"python3 -c \"import urllib.request as u; print(u.urlopen('{target}', timeout=5).status)\"")
        assert peer.strip() == "200"  # the other node of the pair is a peer
    finally:
        in_switch(lab, ["ip", "addr", "del", f"{stranger}/{lab.subnet.prefixlen}", "dev", "br0"])


def test_second_run_changes_nothing(site):
    lab, spec, workdir, _first = site
    started = time.monotonic()
    second = run(spec, lab, "site", workdir)
    TIMES["second_run_s"] = round(time.monotonic() - started, 1)
    assert second.ok, failures(second)
    changed = {host: r.changed for host, r in second.recap.items()}
    assert changed == {h.name: 0 for h in lab.hosts}
    print(f"\nsite.yml on 2 lab hosts: first run {TIMES['first_run_s']} s, second run {TIMES['second_run_s']} s")
