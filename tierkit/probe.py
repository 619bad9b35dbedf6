"""Bounded probes of a deployed stack, for `tierkit status`: every probe runs in parallel with its
own timeout, so a dead host costs one timeout, never a hang.

`probe(request)` takes a `ProbeRequest` (hosts, their vLLM port, the endpoint, the failover VIP)
and returns a `ProbeReport`: per host, whether SSH's port answers, vLLM's version
(GET /version) and served models (GET /v1/models, with the API key from the environment), and
whether the host holds the VIP (over SSH with its pinned key: `ip -o addr`); for the endpoint,
/health and the models it serves. The API key is the client's, read as `tierkit smoke` reads it
($OPENAI_API_KEY). Lab hosts are reachable only inside their namespace: run `python -m
tierkit.probe` there, with the request as JSON on stdin and the report as JSON on stdout (the
API key stays in the environment, never on a command line).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from tierkit.hosts import Host
from tierkit.smoke.endpoint import CLIENT_API_KEY_ENV

TIMEOUT_S = 3.0


class ProbeRequest(BaseModel):
    hosts: list[Host]
    vllm_port: int
    endpoint: str
    virtual_ip: str | None = None
    timeout_s: float = Field(TIMEOUT_S, gt=0, le=30)


class HostProbe(BaseModel):
    name: str
    address: str
    ssh: bool
    vllm_version: str | None = None
    models: list[str] = Field(default_factory=list)
    holds_vip: bool | None = None  # None: not the failover tier, or SSH did not answer
    problem: str | None = None


class EndpointProbe(BaseModel):
    url: str
    healthy: bool
    models: list[str] = Field(default_factory=list)
    problem: str | None = None


class ProbeReport(BaseModel):
    hosts: list[HostProbe]
    endpoint: EndpointProbe


def _tcp(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _get(base: str, path: str, timeout: float, api_key: str | None = None) -> tuple[int, Any]:
    """GET base+path; (status, parsed JSON or None). Raises OSError on no answer."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read(1 << 20)
    finally:
        conn.close()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, None


def _models(base: str, timeout: float, api_key: str | None) -> list[str]:
    status, data = _get(base, "/v1/models", timeout, api_key)
    if status != 200 or not isinstance(data, dict):
        raise OSError(f"/v1/models answered HTTP {status}")
    return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]


def _holds_vip(host: Host, vip: str, timeout: float) -> bool | None:
    """Whether `vip` is on one of the host's interfaces (None: SSH did not answer)."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(timeout))}", "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes", "-i", host.key_path, "-p", str(host.port)]
    if host.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={host.known_hosts}"]
    argv += ["-l", host.user, "--", host.address, "ip -o -4 addr show"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 2, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    return any(f" {vip}/" in line for line in done.stdout.splitlines())


def _vllm(base: str, timeout: float, api_key: str | None) -> tuple[str | None, list[str], str | None]:
    """(version, served models, problem) of the vLLM at `base`."""
    version = None
    try:
        status, data = _get(base, "/version", timeout)
        version = str(data.get("version")) if status == 200 and isinstance(data, dict) else None
        return version, _models(base, timeout, api_key), None
    except OSError as exc:
        return version, [], f"vLLM at {base}: {exc or type(exc).__name__}"


def probe_host(host: Host, request: ProbeRequest, api_key: str | None) -> HostProbe:
    """SSH's port and vLLM at once (a host cut off costs one timeout, not two), then the VIP."""
    t = request.timeout_s
    with ThreadPoolExecutor(max_workers=2) as pool:
        ssh = pool.submit(_tcp, host.address, host.port, t)
        vllm = pool.submit(_vllm, f"http://{host.address}:{request.vllm_port}", t, api_key)
        version, models, problem = vllm.result()
        result = HostProbe(name=host.name, address=host.address, ssh=ssh.result(), vllm_version=version,
                           models=models, problem=problem)
    if request.virtual_ip and result.ssh:
        result.holds_vip = _holds_vip(host, request.virtual_ip, t)
    if not result.ssh:
        result.problem = f"SSH port {host.port} does not answer" + (f"; {result.problem}" if result.problem else "")
    return result


def probe_endpoint(request: ProbeRequest, api_key: str | None) -> EndpointProbe:
    t = request.timeout_s
    try:
        status, _ = _get(request.endpoint, "/health", t)
        return EndpointProbe(url=request.endpoint, healthy=status == 200, models=_models(request.endpoint, t, api_key),
                             problem=None if status == 200 else f"/health answered HTTP {status}")
    except OSError as exc:
        return EndpointProbe(url=request.endpoint, healthy=False, problem=f"{exc or type(exc).__name__}")


def probe(request: ProbeRequest, api_key: str | None = None) -> ProbeReport:
    """Every probe at once; the whole report within about twice the timeout."""
    key = api_key if api_key is not None else os.environ.get(CLIENT_API_KEY_ENV, "").strip() or None
    with ThreadPoolExecutor(max_workers=len(request.hosts) + 1) as pool:
        hosts = [pool.submit(probe_host, h, request, key) for h in request.hosts]
        endpoint = pool.submit(probe_endpoint, request, key)
        return ProbeReport(hosts=[f.result() for f in hosts], endpoint=endpoint.result())


def main() -> None:
    """`python -m tierkit.probe`: a ProbeRequest as JSON on stdin, the ProbeReport on stdout."""
    request = ProbeRequest.model_validate_json(sys.stdin.read())
    sys.stdout.write(probe(request).model_dump_json() + "\n")


if __name__ == "__main__":
    main()
