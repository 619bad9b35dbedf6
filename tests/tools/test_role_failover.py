"""The failover role's files as Ansible renders them for the failover stack.

Ansible itself renders the role's templates (role defaults as the lowest layer, then the group
vars tierkit's inventory writes for `stacks/Pulumi.failover.yaml`, then the role's vars), for
both nodes of the pair. The real tools then check the results (`haproxy -c`, `keepalived -t`),
and the tests check what the tier depends on: VRRP over unicast between the two addresses, both
nodes BACKUP with nopreempt, the VIP on both HAProxy frontends, both vLLMs in both backends, the
retry policy, stats on localhost only, and the health script's verdicts against a real server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_render import render_play, template_play
from tierkit import inventory
from tierkit.hosts import Host
from tierkit.providers.lab import host_addresses
from tierkit.spec import load_stack

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "failover"
FILES = {
    "haproxy.cfg": "haproxy.cfg.j2",
    "keepalived.conf": "keepalived.conf.j2",
    "tierkit-check.sh": "tierkit-check.sh.j2",
    "tierkit-notify.sh": "tierkit-notify.sh.j2",
    "keepalived.default": "keepalived.default.j2",
    "firewall.nft": "firewall.nft.j2",
    "tierkit-check.headers": "tierkit-check.headers.j2",
    "tierkit-drain-agent.service": "tierkit-drain-agent.service.j2",
    "vllm-drain.conf": "vllm-drain.conf.j2",
}
INTERFACE = "host0"
API_KEY = "sk-check-0123456789"
AGENT_PORT = 8405

def failover_hosts() -> tuple[Any, list[Host]]:
    spec = load_stack("failover", ROOT)
    subnet = spec.provider.subnet
    hosts = [
        Host(name=f"ha-{i + 1}", address=str(addr), key_path="/nonexistent/key", netns="tk-ha")
        for i, addr in enumerate(host_addresses(subnet, spec.server_count))
    ]
    return spec, hosts


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both nodes' files, rendered once by ansible-playbook from the failover stack's inventory."""
    spec, hosts = failover_hosts()
    work = tmp_path_factory.mktemp("failover")
    out = work / "out"
    for host in hosts:
        (out / host.name).mkdir(parents=True)
    extra = {
        "files": FILES,
        "failover_vrrp_interface": INTERFACE,
        "failover_api_key": API_KEY,
        # keepalived's check reads its headers from the rendered file.
        "failover_check_headers": f"{out}/{{{{ inventory_hostname }}}}/tierkit-check.headers",
        # keepalived -t checks that the scripts exist and are safe: point at the rendered ones.
        "failover_check_script": f"{out}/{{{{ inventory_hostname }}}}/tierkit-check.sh",
        "failover_notify_script": f"{out}/{{{{ inventory_hostname }}}}/tierkit-notify.sh",
    }
    render_play(ROLE, spec, hosts, template_play(ROLE, "failover", out), work, extra)
    nodes = {h.name: {name: out / h.name / name for name in FILES} for h in hosts}
    return {"spec": spec, "hosts": hosts, "nodes": nodes}


# ---------------------------------------------------------------------------------------------
# A small reader for keepalived.conf: `keyword args... {` opens a block, `}` closes it.


def parse_keepalived(text: str) -> list[Any]:
    """[(keyword, [args], children)] for each statement; children is None for a leaf."""
    stack: list[list[Any]] = [[]]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line == "}":
            stack.pop()
            continue
        words = line.rstrip("{").split()
        if line.endswith("{"):
            node: list[Any] = []
            stack[-1].append((words[0], words[1:], node))
            stack.append(node)
        else:
            stack[-1].append((words[0], words[1:], None))
    assert len(stack) == 1, "unbalanced braces"
    return stack[0]


def block(statements: list[Any], keyword: str) -> tuple[list[str], list[Any]]:
    found = [(args, kids) for kw, args, kids in statements if kw == keyword]
    assert len(found) == 1, f"expected one {keyword!r}, found {len(found)}"
    return found[0]


def leaf(statements: list[Any], keyword: str) -> list[str]:
    args, kids = block(statements, keyword)
    assert kids is None
    return args


def haproxy_sections(text: str) -> dict[str, list[list[str]]]:
    """{'frontend tierkit_vip': [[word, ...], ...], ...}: each section's statements."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(line.strip(), [])
        else:
            assert current is not None, f"statement outside a section: {line!r}"
            current.append(line.split())
    return sections


def statements(section: list[list[str]], keyword: str) -> list[list[str]]:
    return [words[1:] for words in section if words[0] == keyword]


# ---------------------------------------------------------------------------------------------
# The real tools accept the files.


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (scripts/setup.sh installs it)")
def test_haproxy_accepts_the_config(rendered: dict[str, Any]) -> None:
    for files in rendered["nodes"].values():
        proc = subprocess.run(["haproxy", "-c", "-f", str(files["haproxy.cfg"])], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived is not installed (scripts/setup.sh installs it)")
def test_keepalived_accepts_the_config(rendered: dict[str, Any]) -> None:
    for files in rendered["nodes"].values():
        proc = subprocess.run(
            ["keepalived", "--config-test", "--use-file", str(files["keepalived.conf"])],
            capture_output=True, text=True, timeout=30,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived is not installed (scripts/setup.sh installs it)")
def test_keepalived_config_test_catches_a_broken_file(rendered: dict[str, Any], tmp_path: Path) -> None:
    """The role's `validate:` is worth something: keepalived -t fails on a misspelt keyword."""
    conf = next(iter(rendered["nodes"].values()))["keepalived.conf"]
    broken = tmp_path / "keepalived.conf"
    broken.write_text(conf.read_text().replace("nopreempt", "nopreemt"))
    proc = subprocess.run(["keepalived", "-t", "-f", str(broken)], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0


# ---------------------------------------------------------------------------------------------
# keepalived: VRRP over unicast, BACKUP + nopreempt, authentication, the spec's VIP.


def test_vrrp_speaks_unicast_from_each_node_to_the_other(rendered: dict[str, Any]) -> None:
    hosts = rendered["hosts"]
    for host in hosts:
        conf = parse_keepalived(rendered["nodes"][host.name]["keepalived.conf"].read_text())
        _, inst = block(conf, "vrrp_instance")
        assert leaf(inst, "unicast_src_ip") == [host.address]
        _, peers = block(inst, "unicast_peer")
        assert [kw for kw, _, _ in peers] == [h.address for h in hosts if h is not host]
        assert leaf(inst, "interface") == [INTERFACE]


def test_both_nodes_start_backup_with_nopreempt_and_equal_priority(rendered: dict[str, Any]) -> None:
    priorities = set()
    for files in rendered["nodes"].values():
        _, inst = block(parse_keepalived(files["keepalived.conf"].read_text()), "vrrp_instance")
        assert leaf(inst, "state") == ["BACKUP"]  # nopreempt only works from BACKUP
        assert leaf(inst, "nopreempt") == []
        priorities.add(tuple(leaf(inst, "priority")))
    assert len(priorities) == 1


def test_vrrp_is_version_3_with_the_spec_vip_router_id_and_advert_and_no_password(rendered: dict[str, Any]) -> None:
    """VRRPv3 (sub-second adverts), which has no authentication: keepalived -t refuses an
    `authentication` block with version 3, so none is written; adverts count only from the peers."""
    fo = rendered["spec"].failover
    subnet = rendered["spec"].provider.subnet
    for files in rendered["nodes"].values():
        conf = parse_keepalived(files["keepalived.conf"].read_text())
        assert leaf(block(conf, "global_defs")[1], "vrrp_version") == ["3"]
        _, inst = block(conf, "vrrp_instance")
        assert leaf(inst, "virtual_router_id") == [str(fo.router_id)]
        assert float(leaf(inst, "advert_int")[0]) == fo.advert_int < 1
        assert leaf(inst, "check_unicast_src") == []
        assert "authentication" not in [kw for kw, _, _ in inst]
        _, vips = block(inst, "virtual_ipaddress")
        assert [(kw, args) for kw, args, _ in vips] == [(f"{fo.virtual_ip}/{subnet.prefixlen}", ["dev", INTERFACE])]


def test_the_vrrp_process_is_scheduled_ahead_of_vllm(rendered: dict[str, Any]) -> None:
    """Realtime priority, locked in memory, and a raised nice value as the fallback (the role's
    defaults), so a node whose cores vLLM keeps busy still sends its adverts on time."""
    for files in rendered["nodes"].values():
        defs = block(parse_keepalived(files["keepalived.conf"].read_text()), "global_defs")[1]
        assert leaf(defs, "vrrp_rt_priority") == ["50"]
        assert leaf(defs, "vrrp_no_swap") == []
        assert leaf(defs, "vrrp_priority") == ["-20"]


def test_the_health_script_tolerates_a_slow_completion(rendered: dict[str, Any]) -> None:
    """keepalived's script gives a completion its curl timeout plus a second, and the node gives
    the VIP up only after `fall` failures in a row, each a second apart."""
    for files in rendered["nodes"].values():
        _, script = block(parse_keepalived(files["keepalived.conf"].read_text()), "vrrp_script")
        assert (leaf(script, "interval"), leaf(script, "timeout"), leaf(script, "fall"), leaf(script, "rise")) == (
            ["1"], ["4"], ["3"], ["2"])
        assert "--max-time 3 " in files["tierkit-check.sh"].read_text()


def test_vrrp_tracks_the_health_script_and_notifies(rendered: dict[str, Any]) -> None:
    for files in rendered["nodes"].values():
        conf = parse_keepalived(files["keepalived.conf"].read_text())
        assert "enable_script_security" in [kw for kw, _, _ in block(conf, "global_defs")[1]]
        (name,), script = block(conf, "vrrp_script")
        assert leaf(script, "script") == [f'"{files["tierkit-check.sh"]}"']
        assert "init_fail" in [kw for kw, _, _ in script]  # no VIP before the node can serve
        _, inst = block(conf, "vrrp_instance")
        _, tracked = block(inst, "track_script")
        assert [kw for kw, _, _ in tracked] == [name]
        assert leaf(inst, "notify") == [f'"{files["tierkit-notify.sh"]}"']


def test_keepalived_runs_vrrp_only(rendered: dict[str, Any]) -> None:
    for files in rendered["nodes"].values():
        assert 'DAEMON_ARGS="--vrrp"' in files["keepalived.default"].read_text().splitlines()


# ---------------------------------------------------------------------------------------------
# HAProxy: the same balancer on both nodes, bound to the VIP, over both vLLMs.


def test_haproxy_is_identical_on_both_nodes(rendered: dict[str, Any]) -> None:
    texts = {files["haproxy.cfg"].read_text() for files in rendered["nodes"].values()}
    assert len(texts) == 1


def test_haproxy_frontend_binds_the_vip_and_localhost_on_the_serving_port(rendered: dict[str, Any]) -> None:
    spec = rendered["spec"]
    cfg = haproxy_sections(next(iter(rendered["nodes"].values()))["haproxy.cfg"].read_text())
    binds = statements(cfg["frontend tierkit_vip"], "bind")
    port = spec.serving.port
    # `transparent`: the node without the VIP binds it too, ready when keepalived moves it there
    assert binds == [[f"{spec.failover.virtual_ip}:{port}", "transparent"], [f"127.0.0.1:{port}"]]


def test_haproxy_backend_checks_both_vllms_and_retries_on_the_other(rendered: dict[str, Any]) -> None:
    spec, hosts = rendered["spec"], rendered["hosts"]
    cfg = haproxy_sections(next(iter(rendered["nodes"].values()))["haproxy.cfg"].read_text())
    backend = cfg["backend tierkit_vllm"]
    group_vars = inventory.render(spec, hosts).group_vars
    vllm_port = group_vars["vllm_port"]
    assert vllm_port != spec.serving.port  # HAProxy owns the serving port
    servers = statements(backend, "server")
    assert servers == [[h.name, f"{h.address}:{vllm_port}"] for h in hosts]
    assert ["httpchk"] in statements(backend, "option")
    # a one-token completion with the API key, not /health (which answers while the engine hangs)
    (send,) = [" ".join(w) for w in statements(backend, "http-check") if w[0] == "send"]
    model = spec.served_model_name
    assert 'meth POST uri /v1/completions' in send and f'hdr Authorization "Bearer {API_KEY}"' in send
    assert f"""body '{{"model": "{model}", "prompt": "ok", "max_tokens": 1}}'""" in send
    (retry_on,) = statements(backend, "retry-on")
    # refused, closed unanswered, and vLLM's answers once its engine is gone
    assert {"conn-failure", "empty-response", "500", "503"} <= set(retry_on)
    assert ["redispatch", "1"] in statements(backend, "option")  # each retry on another vLLM
    assert int(statements(backend, "retries")[0][0]) >= 1
    (default_server,) = statements(backend, "default-server")
    assert "check" in default_server
    inter = default_server[default_server.index("inter") + 1]
    fall = int(default_server[default_server.index("fall") + 1])
    assert inter.endswith("ms") and int(inter[:-2]) * fall <= 2000  # a dead vLLM is DOWN within 2 s


def test_haproxy_timeouts_fit_long_streams(rendered: dict[str, Any]) -> None:
    cfg = haproxy_sections(next(iter(rendered["nodes"].values()))["haproxy.cfg"].read_text())
    timeouts = {words[0]: words[1] for words in statements(cfg["defaults"], "timeout")}
    minutes = {k: int(v[:-1]) for k, v in timeouts.items() if v.endswith("m")}
    assert minutes.get("server", 0) >= 5 and minutes.get("client", 0) >= 5


def test_haproxy_stats_listen_on_localhost_only(rendered: dict[str, Any]) -> None:
    cfg = haproxy_sections(next(iter(rendered["nodes"].values()))["haproxy.cfg"].read_text())
    stats = [body for name, body in cfg.items() if ["stats", "enable"] in body]
    assert len(stats) == 1
    binds = statements(stats[0], "bind")
    assert binds and all(b[0].startswith("127.0.0.1:") for b in binds)


# ---------------------------------------------------------------------------------------------
# The scripts keepalived runs, against a real HTTP server.

HEALTH_SERVER = textwrap.dedent("""\
    import http.server, json, sys, time
    status, key = int(sys.argv[2]), sys.argv[3]
    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            ok = (self.path == "/v1/completions" and body.get("max_tokens") == 1
                  and self.headers.get("Authorization") == f"Bearer {key}")
            self.send_response(status if ok else 401)
            self.end_headers()
        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
    server.timeout = 0.2
    deadline = time.monotonic() + 30  # never outlives the test
    while time.monotonic() < deadline:
        server.handle_request()
""")


def run_check_in_netns(check: Path, port: int, status: int | None, tmp_path: Path) -> int:
    """Exit code of the health script in a private network namespace, where 127.0.0.1:port is a
    server answering a one-token completion carrying the API key with `status` (None: nothing listens)."""
    server = tmp_path / "health_server.py"
    server.write_text(HEALTH_SERVER)
    start = (
        f"{sys.executable} {server} {port} {status} {API_KEY} & server=$!; "
        f"for i in $(seq 50); do {sys.executable} -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}))' "
        f"2>/dev/null && break; sleep 0.1; done; "
        if status is not None else "server=; "
    )
    script = f"ip link set lo up; {start}sh {check}; rc=$?; [ -n \"$server\" ] && kill $server && wait $server; exit $rc"
    return subprocess.run(["unshare", "--net", "sh", "-c", script], timeout=60).returncode


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("curl") is None, reason="needs root (unshare --net) and curl")
def test_health_script_follows_health_through_the_local_haproxy(rendered: dict[str, Any], tmp_path: Path) -> None:
    port = rendered["spec"].serving.port
    check = next(iter(rendered["nodes"].values()))["tierkit-check.sh"]
    assert run_check_in_netns(check, port, 200, tmp_path) == 0
    assert run_check_in_netns(check, port, 503, tmp_path) != 0  # vLLM's dead engine, or no vLLM behind HAProxy
    assert run_check_in_netns(check, port, None, tmp_path) != 0  # HAProxy down


def test_notify_script_logs_each_transition(rendered: dict[str, Any], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    logged = tmp_path / "logged"
    (bin_dir / "logger").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {logged}\n')
    (bin_dir / "logger").chmod(0o755)
    notify = next(iter(rendered["nodes"].values()))["tierkit-notify.sh"]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["sh", str(notify), "INSTANCE", "tierkit_vip", "MASTER", "100"], env=env, check=True)
    tag_flag, tag, message = logged.read_text().splitlines()
    assert (tag_flag, tag) == ("-t", "tierkit-failover")
    assert "tierkit_vip is now MASTER" in message and str(rendered["spec"].failover.virtual_ip) in message


def test_vrrp_and_the_serving_port_are_accepted_from_their_sources_only(rendered: dict[str, Any]) -> None:
    addresses = {h.name: h.address for h in rendered["hosts"]}
    clients = inventory.client_sources(rendered["spec"], rendered["hosts"])
    assert clients == [str(rendered["spec"].provider.subnet[1])]  # the lab's switch
    port = rendered["spec"].serving.port
    for name, files in rendered["nodes"].items():
        text = files["firewall.nft"].read_text()
        peers = [a for n, a in addresses.items() if n != name]
        assert f"ip protocol 112 ip saddr {{ {', '.join(peers)} }} accept" in text
        rules = [line.strip() for line in text.splitlines() if line.startswith("\t\t")]
        assert f"elements = {{ 127.0.0.0/8, {', '.join(peers + clients)} }}" in rules
        nodes = ", ".join(addresses.values())  # the drain agent answers both HAProxies
        assert rules[-7:] == [f'tcp dport {port} iifname "lo" accept', f"tcp dport {port} ip saddr @serving_sources accept",
                              f"tcp dport {port} drop", f"tcp dport {AGENT_PORT} ip saddr {{ {nodes} }} accept",
                              f"tcp dport {AGENT_PORT} drop",
                              f"ip protocol 112 ip saddr {{ {', '.join(peers)} }} accept", "ip protocol 112 drop"]
        if shutil.which("nft"):
            check = subprocess.run(["nft", "--check", "--file", str(files["firewall.nft"])], capture_output=True, text=True)
            assert check.returncode == 0, check.stderr


def test_every_stop_of_vllm_drains_it_from_both_haproxies_first(rendered: dict[str, Any]) -> None:
    """Both HAProxies poll each node's drain agent; vLLM's drop-in runs the drain before SIGTERM
    (ExecStop) and lowers the flag at each start, and the agent listens on the node's address."""
    addresses = {h.name: h.address for h in rendered["hosts"]}
    backend = rendered["spec"].vllm_port
    for name, files in rendered["nodes"].items():
        sections = haproxy_sections(files["haproxy.cfg"].read_text())
        [default] = statements(sections["backend tierkit_vllm"], "default-server")
        assert " ".join(default).endswith(f"agent-check agent-port {AGENT_PORT} agent-inter 500ms")
        drop_in = files["vllm-drain.conf"].read_text().splitlines()
        [stop] = [line for line in drop_in if line.startswith("ExecStop=")]
        assert stop.startswith("ExecStop=+/usr/local/libexec/tierkit-drain ")  # as root, outside vLLM's sandbox
        words = stop.split()
        assert [words[i + 1] for i, w in enumerate(words) if w == "--balancer"] == list(addresses.values())
        assert f"http://{addresses[name]}:{backend}/metrics" in words
        assert words[words.index("--timeout") + 1] == "25"
        assert [line for line in drop_in if line.startswith("ExecStartPre=")][0].endswith(" ready")
        assert "After=tierkit-drain-agent.service" in drop_in
        agent = files["tierkit-drain-agent.service"].read_text()
        assert f"serve --address {addresses[name]} --port {AGENT_PORT}" in agent
        assert "DynamicUser=yes" in agent and "Requires=tierkit-failover-firewall.service" in agent
