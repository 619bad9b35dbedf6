"""The vllm role's weights download unit (roles/vllm/templates/vllm-download.service.j2): a
oneshot with its own timeout, the token from the 0600 env file (never on the command line), the
model id escaped for systemd, and vLLM's unit ordered after it only when a download happens."""

from __future__ import annotations

from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "roles" / "vllm" / "templates"
VARS = {"ansible_managed": "managed", "vllm_user": "vllm", "vllm_home": "/opt/vllm", "vllm_venv": "/opt/vllm/venv",
        "vllm_env_file": "/etc/vllm/vllm.env", "vllm_download_service": "vllm-download",
        "vllm_download_timeout": 7200, "vllm_hf_token": "hf_secret"}


def render(name: str, **values: object) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True)
    return env.get_template(name).render(**VARS, **values)


def test_the_download_is_a_oneshot_with_its_own_timeout_and_no_secret():
    unit = render("vllm-download.service.j2", vllm_model='org/model"; rm -rf / $HOME 100%')
    assert "Type=oneshot" in unit and "RemainAfterExit=yes" in unit
    assert "TimeoutStartSec=7200" in unit and "EnvironmentFile=/etc/vllm/vllm.env" in unit
    assert "hf_secret" not in unit
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert exec_start.endswith('"org/model\\"; rm -rf / $$HOME 100%%"')


def test_a_local_directory_is_not_downloaded():
    variables = yaml.safe_load((ROOT / "roles" / "vllm" / "vars" / "main.yml").read_text())
    rule = jinja2.Environment().from_string(variables["vllm_download"])
    assert rule.render(vllm_model="meta-llama/Llama-3.3-70B-Instruct") == "True"
    assert rule.render(vllm_model="/opt/models/llama") == "False"
