"""tierkit/localvllm/local_vllm.py: the local vLLM launcher's process handling, without vLLM."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tierkit.errors import TierkitError
from tierkit.localvllm import local_vllm


def test_server_command_and_environment() -> None:
    cmd = local_vllm.server_command(Path("/v/bin/python"), Path("/m"), "tiny-llama", 8123, "k")
    assert cmd[:3] == ["/v/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert flags == {"--model": "/m", "--served-model-name": "tiny-llama", "--host": "127.0.0.1",
                     "--port": "8123", "--max-model-len": "512", "--dtype": "bfloat16",
                     "--api-key": "k"}
    assert "--api-key" not in local_vllm.server_command(Path("p"), Path("m"), "n", 1, None)
    env = local_vllm.server_env()
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_NO_USAGE_STATS"] == "1"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_stop_group_ends_every_process_in_the_group() -> None:
    # A leader that ignores SIGTERM and a child: both must be gone afterwards.
    proc = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; sleep 60 & sleep 60; wait"], start_new_session=True
    )
    deadline = time.monotonic() + 5
    while len(local_vllm.group_pids(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(local_vllm.group_pids(proc.pid)) == 3
    assert local_vllm.process_group_rss(proc.pid) > 0
    local_vllm.stop_group(proc, grace_s=0.5)
    assert local_vllm.group_pids(proc.pid) == [] and proc.returncode is not None


def test_a_server_that_dies_reports_its_log(tmp_cache: Path, tmp_path: Path) -> None:
    # This interpreter has no vllm module: the server exits at once.
    with pytest.raises(TierkitError) as exc:
        with local_vllm.serve(tmp_path, served_name="m", python=Path(sys.executable)):
            pytest.fail("serve must not yield when the server never became healthy")
    message = str(exc.value)
    assert "exited 1 before /health answered" in message and "No module named" in message


def test_a_server_that_never_answers_times_out_and_is_stopped(
    tmp_cache: Path, tmp_path: Path
) -> None:
    fake, pid_file = tmp_path / "python", tmp_path / "pid"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\necho loading forever\nexec sleep 60\n")
    fake.chmod(0o755)
    with pytest.raises(TierkitError, match=r"did not answer within 1 s \(loading forever\)"):
        with local_vllm.serve(tmp_path, served_name="m", python=fake, startup_timeout_s=1):
            pytest.fail("serve must not yield without /health")
    assert not Path(f"/proc/{pid_file.read_text().strip()}").exists()
