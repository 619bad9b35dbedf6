"""The vLLM role's unit and env file, rendered with hostile values through the role's own
filters: every value stays one word of one line, or the render refuses it; and its watchdog,
run against a fake vLLM whose engine hangs."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

ROLE = Path(__file__).resolve().parents[2] / "roles" / "vllm"


def _filters() -> dict:
    spec = importlib.util.spec_from_file_location("systemd_quote", ROLE / "filter_plugins" / "systemd_quote.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"), undefined=jinja2.StrictUndefined,
                         keep_trailing_newline=True)
ENV.filters.update(_filters())
ENV.filters["to_json"] = json.dumps  # as Ansible's
ENV.filters["bool"] = boolean
VARS = {
    "ansible_managed": "managed", "vllm_served_model_name": "tiny", "vllm_model": "/m", "vllm_user": "vllm",
    "vllm_home": "/opt/vllm", "vllm_venv": "/opt/vllm/venv", "vllm_nccl_p2p_disable": False, "vllm_env": {},
    "vllm_env_file": "/etc/vllm/vllm.env", "vllm_args": ["--model", "/m"], "vllm_stop_timeout": 30,
    "vllm_firewall": True, "vllm_firewall_service": "vllm-firewall", "vllm_service": "vllm",
    "vllm_api_key": "", "vllm_hf_token": "", "vllm_is_head": True, "vllm_node_rank": 0, "vllm_download": False,
    "vllm_cpu_threads_bind": "", "vllm_multinode": False, "vllm_launcher": "/opt/vllm/vllm_serve.py",
    "vllm_package": "vllm",
}
HOSTILE = ['a"b', "a\\b", "$(reboot)", "${HOME}", "%n%i", "a b", "'x'", "--port", "; rm -rf /", "`id`", "é✓"]


def render(name: str, **changes: object) -> str:
    return ENV.get_template(name).render({**VARS, **changes})


def exec_words(unit: str) -> list[str]:
    """ExecStart= as systemd splits it: C-style quoting, then `$$` and `%%` unescaped."""
    [line] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    return [w.replace("$$", "$").replace("%%", "%") for w in shlex.split(line.removeprefix("ExecStart="))]


def directives(text: str) -> list[str]:
    return [line.split("=", 1)[0] for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("value", HOSTILE)
def test_exec_start_keeps_each_argument_one_word(value: str) -> None:
    unit = render("vllm.service.j2", vllm_args=["--served-model-name", value, "--x", value])
    assert exec_words(unit) == ["/opt/vllm/venv/bin/python", "/opt/vllm/vllm_serve.py", "vllm", "serve",
                                "--served-model-name", value, "--x", value]
    assert directives(unit) == directives(render("vllm.service.j2"))


@pytest.mark.parametrize("value", ["m\n[Service]\nExecStartPre=+/bin/sh -c id", "a\rb", "a\x00b", "a\x1bb"])
@pytest.mark.parametrize("where", ["vllm_args", "vllm_env", "vllm_served_model_name"])
def test_control_characters_are_refused(value: str, where: str) -> None:
    change = {"vllm_args": ["--x", value], "vllm_env": {"X": value}, "vllm_served_model_name": value}[where]
    with pytest.raises(AnsibleFilterError, match="control character"):
        render("vllm.service.j2", **{where: change})


@pytest.mark.parametrize("value", HOSTILE)
def test_environment_values_stay_one_assignment(value: str) -> None:
    unit = render("vllm.service.j2", vllm_env={"X": value})
    [line] = [line for line in unit.splitlines() if line.startswith('Environment="X=')]
    assert shlex.split(line.removeprefix("Environment="))[0].replace("%%", "%") == f"X={value}"


@pytest.mark.parametrize("value", [*HOSTILE, "sk-" + "x" * 200])
def test_env_file_values_are_quoted(value: str) -> None:
    text = render("vllm.env.j2", vllm_api_key=value, vllm_hf_token=value)
    pairs = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert [p.split("=", 1)[0] for p in pairs] == ["VLLM_API_KEY", "HF_TOKEN"]
    assert all(shlex.split(p.split("=", 1)[1]) == [value] for p in pairs)


@pytest.mark.parametrize("value", ["k\nLD_PRELOAD=/tmp/x.so", "k\r", "k\x00"])
def test_env_file_refuses_control_characters(value: str) -> None:
    with pytest.raises(AnsibleFilterError):
        render("vllm.env.j2", vllm_api_key=value)


def test_vllm_requires_its_firewall() -> None:
    unit = render("vllm.service.j2")
    assert "Requires=vllm-firewall.service" in unit and "After=vllm-firewall.service" in unit
    assert "vllm-firewall" not in render("vllm.service.j2", vllm_firewall=False)


# ---------------------------------------------------------------------------------------------
# The watchdog script against a real HTTP server: /health 200, completions answered or hung.

FAKE_VLLM = """\
import http.server, sys, time
mode = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" and mode != "down" else 404)
        self.end_headers()
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        if mode == "hung":
            time.sleep(3)
        ok = self.path == "/v1/completions" and self.headers.get("Authorization") == "Bearer sk-w"
        self.send_response(200 if ok else 401)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def run_watchdog(tmp_path: Path, mode: str, runs: int) -> tuple[list[str], str]:
    """Run the rendered watchdog `runs` times against a fake vLLM (in a private network
    namespace); returns the systemctl calls it made and the failure count left behind."""
    if os.geteuid() != 0 or shutil.which("curl") is None:
        pytest.skip("needs root (unshare --net) and curl")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool in ("systemctl", "logger"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "headers").write_text("Content-Type: application/json\nAuthorization: Bearer sk-w\n")
    script = tmp_path / "watchdog.sh"
    script.write_text(render("watchdog.sh.j2", vllm_url_host="127.0.0.1", vllm_port=18000, vllm_watchdog_timeout=1,
                             vllm_watchdog_failures=3, vllm_watchdog_headers=str(tmp_path / "headers"),
                             vllm_watchdog_state=str(tmp_path / "count"), vllm_watchdog_service="vllm-watchdog",
                             vllm_check_request={"model": "m", "prompt": "ok", "max_tokens": 1}))
    (tmp_path / "vllm.py").write_text(FAKE_VLLM)
    shell = (f"ip link set lo up; {sys.executable} {tmp_path / 'vllm.py'} 18000 {mode} & s=$!; sleep 1; "
             f"for i in $(seq {runs}); do PATH={bin_dir}:$PATH sh {script}; done; kill $s")
    subprocess.run(["unshare", "--net", "sh", "-c", shell], check=True, timeout=60)
    count = (tmp_path / "count").read_text().strip() if (tmp_path / "count").exists() else ""
    return (calls.read_text().splitlines() if calls.exists() else []), count


def test_watchdog_restarts_a_hung_engine_after_three_failed_checks(tmp_path: Path) -> None:
    calls, count = run_watchdog(tmp_path, "hung", 2)
    assert calls == [] and count == "2"
    again = tmp_path / "again"
    again.mkdir()
    calls, count = run_watchdog(again, "hung", 3)
    assert calls[-1] == "systemctl --no-block restart vllm" and count == ""


@pytest.mark.parametrize("mode", ["ok", "down"])
def test_watchdog_leaves_a_serving_or_stopped_vllm_alone(tmp_path: Path, mode: str) -> None:
    calls, count = run_watchdog(tmp_path, mode, 4)
    assert calls == [] and count == ""
