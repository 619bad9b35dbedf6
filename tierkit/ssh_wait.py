"""Wait until hosts answer SSH, and pin their host keys in the stack's known_hosts.

For each host, in parallel, until a deadline: connect, check the server's host key, log in with
the host's key and run `true`. Connection errors, SSH banners not yet served and logins not yet
accepted (cloud-init still writing authorized_keys) are retried with backoff. A host key that does
not match is never retried and never accepted:

- a host that comes with a known_hosts file (the lab writes one) must present a key listed there;
  that key is then recorded in the stack's known_hosts;
- a host without one (bare metal, cloud) is checked against the stack's known_hosts; on first
  contact its key is pinned there, and a line says so with the key's fingerprint.

Hosts reachable only inside a network namespace (lab hosts) are waited for from inside it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import paramiko

from tierkit import netns
from tierkit.errors import TierkitError
from tierkit.hosts import Host

CONNECT_TIMEOUT_S = 5.0
BACKOFF_S = (0.25, 0.5, 1.0, 2.0)
Log = Callable[[str], None]

# Retried failures are reported by wait_for_ssh; paramiko's own log of each would be noise.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


def known_hosts_entry(host: Host) -> str:
    """How known_hosts names the host: `addr`, or `[addr]:port` off port 22."""
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class PinStore:
    """The stack's known_hosts file, shared by the waiting threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.keys = paramiko.HostKeys()
        if path.exists():
            self.keys.load(str(path))

    def pinned(self, entry: str) -> dict[str, paramiko.PKey]:
        with self._lock:
            return dict(self.keys.lookup(entry) or {})

    def pin(self, entry: str, key: paramiko.PKey) -> None:
        """Record `key` as the host's only key (replacing older pins of that host)."""
        with self._lock:
            while self.keys.lookup(entry) is not None:
                del self.keys[entry]
            self.keys.add(entry, key.get_name(), key)
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_suffix(".tmp")
            self.keys.save(str(tmp))
            tmp.replace(self.path)


@dataclass
class Reached:
    host: Host
    key_type: str
    fingerprint: str
    how: str  # "verified against the lab's known_hosts", "pinned on first contact", "matches the pin"
    attempts: int
    seconds: float
    key: str  # `TYPE BASE64` of the key the host presented


class HostKeyMismatch(TierkitError):
    pass


def parse_host_key(host: Host) -> paramiko.PKey:
    """The host's pinned key (`TYPE BASE64`), as paramiko holds it."""
    assert host.host_key is not None
    kind, _, blob = host.host_key.partition(" ")
    try:
        return paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
    except (ValueError, paramiko.SSHException) as exc:
        raise TierkitError(f"{host.name}: its pinned host key is not a usable SSH key ({exc}); recreate the host") from None


def public_key_line(key: paramiko.PKey) -> str:
    """`TYPE BASE64`: how a pinned key travels in the hosts (Host.host_key)."""
    return f"{key.get_name()} {key.get_base64()}"


def trusted_keys(host: Host, store: PinStore) -> tuple[dict[str, paramiko.PKey], str]:
    """The keys the host may present, and where they come from ("" when none: first contact).
    A key pinned in the host record (a deploy's state) wins: it is never replaced by another."""
    entry = known_hosts_entry(host)
    if host.host_key:
        key = parse_host_key(host)
        return {key.get_name(): key}, "its pinned host key"
    if host.known_hosts:
        given = paramiko.HostKeys()
        try:
            given.load(host.known_hosts)
        except OSError as exc:
            raise TierkitError(f"{host.name}: cannot read its known_hosts {host.known_hosts} ({exc.strerror}); is the lab up?") from None
        keys = dict(given.lookup(entry) or given.lookup(host.name) or {})
        if not keys:
            raise TierkitError(f"{host.name}: {entry} is not in its known_hosts {host.known_hosts}; recreate the hosts")
        return keys, host.known_hosts
    keys = store.pinned(entry)
    return keys, (str(store.path) if keys else "")


def check_key(host: Host, key: paramiko.PKey, trusted: dict[str, paramiko.PKey], source: str) -> None:
    want = trusted.get(key.get_name())
    if want is not None and want.asbytes() == key.asbytes():
        return
    expected = ", ".join(f"{k} {fingerprint(v)}" for k, v in trusted.items())
    if host.host_key:
        fix = "the deploy pinned another key: if the server was rebuilt on purpose, replace it through the deploy"
    elif host.known_hosts:
        fix = "recreate the hosts; never skip this check"
    else:
        fix = f"if the server was reinstalled, remove its pin (ssh-keygen -R '{known_hosts_entry(host)}' -f {source}) and retry"
    raise HostKeyMismatch(
        f"{host.name}: host key {key.get_name()} {fingerprint(key)} does not match {source} ({expected}); {fix}"
    )


def _key_name(algorithm: str) -> str:
    """The key type a host key algorithm signs with (rsa-sha2-512 -> ssh-rsa)."""
    return "ssh-rsa" if algorithm.startswith("rsa-sha2-") else algorithm


def _attempt(host: Host, pkey: paramiko.PKey, trusted: dict[str, paramiko.PKey], source: str) -> paramiko.PKey:
    """One connection: host key checked, logged in, `true` run. Returns the server's key."""
    sock = socket.create_connection((host.address, host.port), timeout=CONNECT_TIMEOUT_S)
    transport = paramiko.Transport(sock)
    try:
        if trusted:  # negotiate a key type we hold a trusted key of
            options = transport.get_security_options()
            usable = tuple(a for a in options.key_types if _key_name(a) in trusted)
            if usable:
                options.key_types = usable
        transport.start_client(timeout=CONNECT_TIMEOUT_S)
        key = transport.get_remote_server_key()
        if trusted:
            check_key(host, key, trusted, source)
        transport.auth_publickey(host.user, pkey)
        channel = transport.open_session(timeout=CONNECT_TIMEOUT_S)
        channel.exec_command("true")
        status = channel.recv_exit_status()
        if status != 0:
            raise paramiko.SSHException(f"`true` exited {status}")
        return key
    finally:
        transport.close()


def wait_one(host: Host, store: PinStore, deadline: float, log: Log) -> Reached:
    started = time.monotonic()
    try:
        pkey = paramiko.PKey.from_path(Path(host.key_path).expanduser())
    except (OSError, paramiko.SSHException) as exc:
        raise TierkitError(f"{host.name}: cannot load its SSH key {host.key_path} ({exc}); check key_path") from None
    attempts = 0
    last = "no attempt"
    while True:
        attempts += 1
        trusted, source = trusted_keys(host, store)
        try:
            key = _attempt(host, pkey, trusted, source)
        except HostKeyMismatch:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:  # not up yet, or not accepting us yet
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if time.monotonic() >= deadline:
                raise TierkitError(
                    f"{host.name} ({host.address}:{host.port}): no SSH login within the deadline after "
                    f"{attempts} attempts (last: {last}); check that it is up and accepts {host.key_path} for {host.user}"
                ) from None
            time.sleep(min(BACKOFF_S[min(attempts - 1, len(BACKOFF_S) - 1)], max(0.0, deadline - time.monotonic())))
            continue
        entry = known_hosts_entry(host)
        if host.host_key:
            how = "matches its pinned host key"
        elif host.known_hosts:
            how = f"verified against {host.known_hosts}"
        elif trusted:
            how = f"matches the pin in {store.path}"
        else:
            how = f"pinned on first contact into {store.path}"
            log(f"pinned {host.name} ({entry}) {key.get_name()} {fingerprint(key)} on first contact into {store.path}")
        store.pin(entry, key)
        return Reached(host, key.get_name(), fingerprint(key), how, attempts, time.monotonic() - started,
                       public_key_line(key))


def wait_for_ssh(hosts: list[Host], known_hosts: Path, timeout_s: float, log: Log) -> list[Reached]:
    """Wait for every host (in parallel); all must answer before the deadline."""
    space = netns.for_hosts(hosts)
    if space:
        netns.enter(space)
    store = PinStore(known_hosts)
    deadline = time.monotonic() + timeout_s
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        futures = [pool.submit(wait_one, h, store, deadline, log) for h in hosts]
        results, errors = [], []
        for fut in futures:
            try:
                results.append(fut.result())
            except TierkitError as exc:
                errors.extend(exc.problems)
    if errors:
        raise TierkitError(*errors, exit_code=1)
    return results


def pinned_hosts(results: list[Reached], known_hosts: Path) -> list[Host]:
    """The hosts as later steps should use them: verified against the stack's known_hosts, each
    carrying the key it presented (later steps rebuild a known_hosts from it: tierkit.pins)."""
    return [r.host.model_copy(update={"known_hosts": str(known_hosts), "host_key": r.key}) for r in results]
