"""`tierkit wait-ssh` against a real SSH server (paramiko's server side) on a loopback port:
retries until the server answers, pins on first contact, verifies pins and given known_hosts,
and never accepts a key that does not match."""

from __future__ import annotations

import io
import json
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from tierkit import inventory
from tierkit.cli import main
from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.pins import write_known_hosts
from tierkit.ssh_wait import fingerprint, wait_for_ssh


class _Iface(paramiko.ServerInterface):
    def __init__(self, client_key: paramiko.PKey) -> None:
        self.client_key = client_key

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "root" and key.asbytes() == self.client_key.asbytes()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        channel.send_exit_status(0 if command == b"true" else 1)
        threading.Timer(0.05, _close_quietly, args=(channel,)).start()
        return True


def _close_quietly(channel: paramiko.Channel) -> None:
    """Close the exec channel; the client may have torn the connection down first."""
    try:
        channel.close()
    except (EOFError, OSError, paramiko.SSHException):
        pass


class SshServer:
    """Accepts SSH connections on 127.0.0.1:PORT with HOST_KEY; logins with CLIENT_KEY only."""

    def __init__(self, host_key: paramiko.PKey, client_key: paramiko.PKey, port: int = 0) -> None:
        self.host_key, self.client_key = host_key, client_key
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        t = paramiko.Transport(conn)
        t.add_server_key(self.host_key)
        try:
            t.start_server(server=_Iface(self.client_key))
            chan = t.accept(5)
            if chan is not None:
                deadline = time.monotonic() + 5
                while t.is_active() and time.monotonic() < deadline:
                    time.sleep(0.02)
        except (paramiko.SSHException, EOFError, OSError):
            pass
        finally:
            t.close()

    def close(self) -> None:
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.sock.close()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, paramiko.PKey | Path]:
    """A client login key (ed25519, from ssh-keygen) and two host keys (RSA)."""
    path = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return {"client": paramiko.PKey.from_path(path), "client_path": path,
            "host_a": paramiko.RSAKey.generate(2048), "host_b": paramiko.RSAKey.generate(2048)}


@pytest.fixture
def server(keys: dict) -> Iterator[SshServer]:
    s = SshServer(keys["host_a"], keys["client"])
    yield s
    s.close()


def host(port: int, key_path: Path, known_hosts: str | None = None) -> Host:
    return Host(name="gpu1", address="127.0.0.1", port=port, user="root", key_path=str(key_path), known_hosts=known_hosts)


def test_first_contact_pins_and_says_so(server: SshServer, keys: dict, tmp_path: Path) -> None:
    kh = tmp_path / "stack" / "known_hosts"
    lines: list[str] = []
    [reached] = wait_for_ssh([host(server.port, keys["client_path"])], kh, 10, lines.append)
    assert reached.how.startswith("pinned on first contact")
    assert reached.fingerprint == fingerprint(keys["host_a"])
    assert lines == [f"pinned gpu1 ([127.0.0.1]:{server.port}) ssh-rsa {fingerprint(keys['host_a'])} on first contact into {kh}"]
    assert f"[127.0.0.1]:{server.port} ssh-rsa " in kh.read_text()
    # Second time: the pin is checked, nothing new is said.
    lines.clear()
    [again] = wait_for_ssh([host(server.port, keys["client_path"])], kh, 10, lines.append)
    assert again.how.startswith("matches the pin") and lines == []
    assert len(kh.read_text().splitlines()) == 1


def test_changed_key_is_refused_at_once(keys: dict, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    first = SshServer(keys["host_a"], keys["client"])
    wait_for_ssh([host(first.port, keys["client_path"])], kh, 10, lambda _: None)
    first.close()
    impostor = SshServer(keys["host_b"], keys["client"], port=first.port)
    started = time.monotonic()
    with pytest.raises(TierkitError) as info:
        wait_for_ssh([host(impostor.port, keys["client_path"])], kh, 30, lambda _: None)
    impostor.close()
    assert time.monotonic() - started < 5, "a mismatch is never retried"
    problem = info.value.problems[0]
    assert problem.startswith(f"gpu1: host key ssh-rsa {fingerprint(keys['host_b'])} does not match {kh}")
    assert "ssh-keygen -R" in problem
    assert fingerprint(keys["host_a"]) in kh.read_text() or "ssh-rsa" in kh.read_text()


def test_given_known_hosts_is_the_authority(server: SshServer, keys: dict, tmp_path: Path) -> None:
    lab_kh = tmp_path / "lab_known_hosts"
    stack_kh = tmp_path / "stack_known_hosts"
    entry = f"[127.0.0.1]:{server.port}"
    lab_kh.write_text(f"{entry} {keys['host_b'].get_name()} {keys['host_b'].get_base64()}\n")
    with pytest.raises(TierkitError) as info:
        wait_for_ssh([host(server.port, keys["client_path"], str(lab_kh))], stack_kh, 10, lambda _: None)
    assert "does not match " + str(lab_kh) in info.value.problems[0]
    assert not stack_kh.exists(), "nothing pinned from an unverified key"
    lab_kh.write_text(f"{entry} {keys['host_a'].get_name()} {keys['host_a'].get_base64()}\n")
    # A stale pin of an older lab host is replaced by the verified key.
    stack_kh.write_text(f"{entry} {keys['host_b'].get_name()} {keys['host_b'].get_base64()}\n")
    [reached] = wait_for_ssh([host(server.port, keys["client_path"], str(lab_kh))], stack_kh, 10, lambda _: None)
    assert reached.how == f"verified against {lab_kh}"
    assert stack_kh.read_text().split() == [entry, "ssh-rsa", keys["host_a"].get_base64()]


def test_retries_until_the_server_comes_up(keys: dict, tmp_path: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    started: list[SshServer] = []
    timer = threading.Timer(1.5, lambda: started.append(SshServer(keys["host_a"], keys["client"], port=port)))
    timer.start()
    try:
        [reached] = wait_for_ssh([host(port, keys["client_path"])], tmp_path / "kh", 20, lambda _: None)
    finally:
        timer.join()
        for s in started:
            s.close()
    assert reached.attempts > 1 and reached.seconds >= 1.4


def test_deadline_names_the_host_and_the_last_error(keys: dict, tmp_path: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(TierkitError) as info:
        wait_for_ssh([host(port, keys["client_path"])], tmp_path / "kh", 1.5, lambda _: None)
    assert info.value.exit_code == 1
    problem = info.value.problems[0]
    assert problem.startswith(f"gpu1 (127.0.0.1:{port}): no SSH login within the deadline after ")
    assert "ConnectionRefusedError" in problem


def test_wrong_login_key_is_retried_then_reported(server: SshServer, keys: dict, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    with pytest.raises(TierkitError) as info:
        wait_for_ssh([host(server.port, other)], tmp_path / "kh", 1.5, lambda _: None)
    assert "AuthenticationException" in info.value.problems[0]


def test_cli_reads_stdin_writes_pinned_hosts(server: SshServer, keys: dict, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The verb as the program calls it (tierkit.cli.main, in this process): hosts on stdin,
    progress on stderr, the pinned hosts on stdout and in --write."""
    kh, out = tmp_path / "kh", tmp_path / "hosts.json"
    hosts = [host(server.port, keys["client_path"]).model_dump()]
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(hosts)))
    monkeypatch.setattr(sys, "argv", ["tierkit", "wait-ssh", "--hosts", "-", "--known-hosts", str(kh),
                                      "--write", str(out), "--timeout", "10", "--json"])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    assert exited.value.code == 0, captured.err
    printed = json.loads(captured.out)
    assert printed == json.loads(out.read_text())
    assert printed[0]["known_hosts"] == str(kh)
    assert "pinned gpu1" in captured.err and "ready gpu1" in captured.err
    assert printed[0]["host_key"] == f"ssh-rsa {keys['host_a'].get_base64()}", "the pin travels in the output"


def test_a_pinned_key_in_the_host_wins_and_is_never_re_trusted(server: SshServer, keys: dict, tmp_path: Path) -> None:
    """A host record carrying its pin (a deploy's state) is held to it, even when the stack's
    known_hosts (a cache, here deleted or stale) says nothing or something else."""
    kh = tmp_path / "kh"
    pinned = host(server.port, keys["client_path"]).model_copy(
        update={"host_key": f"ssh-rsa {keys['host_a'].get_base64()}"})
    [reached] = wait_for_ssh([pinned], kh, 10, lambda _: None)
    assert reached.how == "matches its pinned host key"
    other = pinned.model_copy(update={"host_key": f"ssh-rsa {keys['host_b'].get_base64()}"})
    kh.unlink()
    with pytest.raises(TierkitError) as info:
        wait_for_ssh([other], kh, 10, lambda _: None)
    problem = info.value.problems[0]
    assert problem.startswith(f"gpu1: host key ssh-rsa {fingerprint(keys['host_a'])} does not match its pinned host key")
    assert "replace it through the deploy" in problem
    assert not kh.exists(), "nothing pinned from a key that does not match"


def test_known_hosts_rebuilt_from_pins_is_what_ssh_checks(server: SshServer, keys: dict, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """tierkit.pins: the known_hosts any step rebuilds from the hosts' pins; OpenSSH holds a host to it."""
    pinned = host(server.port, keys["client_path"]).model_copy(
        update={"host_key": f"ssh-rsa {keys['host_a'].get_base64()}", "known_hosts": "/nonexistent"})
    [rebuilt] = write_known_hosts([pinned], tmp_path / "run" / "known_hosts")
    cache = Path(rebuilt.known_hosts)
    assert cache == tmp_path / "run" / "known_hosts" and cache.stat().st_mode & 0o777 == 0o600
    assert cache.read_text() == f"[127.0.0.1]:{server.port} ssh-rsa {keys['host_a'].get_base64()}\n"
    # OpenSSH, with the options the inventory gives Ansible, logs in against the rebuilt cache, and
    # refuses the host once the pin is another key.
    def ssh(h: Host) -> subprocess.CompletedProcess[str]:
        ssh_args = shlex.split(inventory.host_vars(h)["ansible_ssh_common_args"])
        return subprocess.run(["ssh", *ssh_args, "-o", "BatchMode=yes", "-i", str(keys["client_path"]),
                               "-p", str(server.port), "root@127.0.0.1", "true"],
                              capture_output=True, text=True, timeout=30)
    assert ssh(rebuilt).returncode == 0
    impostor = pinned.model_copy(update={"host_key": f"ssh-rsa {keys['host_b'].get_base64()}"})
    refused = ssh(write_known_hosts([impostor], cache)[0])
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr
    monkeypatch.chdir(tmp_path)
    [relative] = write_known_hosts([pinned], Path("rel") / "known_hosts")
    assert relative.known_hosts == str(tmp_path / "rel" / "known_hosts"), "absolute: SSH runs elsewhere"
    unpinned = host(server.port, keys["client_path"], "/lab/known_hosts")
    assert write_known_hosts([unpinned], tmp_path / "other") == [unpinned]
