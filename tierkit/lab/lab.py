"""`Lab`: simulated GPU servers on this machine, real everything else.

`Lab.up(...)` makes N hosts, each a systemd-nspawn container booting real systemd from the shared
image (tierkit.lab.image) over its own overlay, with its own network namespace and address on
the lab's private switch (tierkit.lab.network), its own sshd with a host key made before boot and
pinned in the lab's known_hosts, and a simulated GPU set (tierkit.lab.gpuset). `Lab.down(name)`
removes everything a lab made, also after a crash. Clients of lab hosts run inside the lab's
switch namespace: `lab.run(argv)`, or `netns.wrap(argv, host.netns)`.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tierkit import netns
from tierkit.console import err_console
from tierkit.errors import TierkitError
from tierkit.hosts import Host
from tierkit.lab import cgroups, keys, mounts, network, share
from tierkit.lab.gpuset import GpuFault, check_topology, gpu_set, parse_fault
from tierkit.lab.image import ensure_image, image_ready
from tierkit.lab.machine import Machine
from tierkit.lab.sim import GPU_SET_PATH, PERSISTENCED_UNIT_PATH, SIMULATORS, persistenced_unit
from tierkit.lab.state import (
    HostRecord, LabRecord, check_name, host_name, lab_dir, lab_of_host, load, locked, names,
    save, settings, share_dir,
)

FaultAction = Literal["stop", "kill", "reboot", "cut-link", "throttle", "restore"]
FAULT_ACTIONS: tuple[str, ...] = ("stop", "kill", "reboot", "cut-link", "throttle", "restore")
SSH_READY_TIMEOUT_S = 90.0
# A reboot stops every unit first: a failover node's vLLM drains (up to 25 s) and stops (up to 30 s).
REBOOT_TIMEOUT_S = 180.0
MACHINE_LOCK = "_machine"  # subnets and the shared mounts; not a valid lab name


def ssh_argv(host: Host, command: Sequence[str] = (), *, batch: bool = True,
             connect_timeout_s: int | None = None) -> list[str]:
    """`ssh` to the host, its key checked against its known_hosts, run where it is reachable."""
    options = {"StrictHostKeyChecking": "yes", "GlobalKnownHostsFile": "/dev/null",
               "IdentitiesOnly": "yes", "LogLevel": "ERROR"}
    if host.known_hosts:
        options["UserKnownHostsFile"] = host.known_hosts
    if batch:
        options["BatchMode"] = "yes"
    if connect_timeout_s is not None:
        options["ConnectTimeout"] = str(connect_timeout_s)
    argv = ["ssh", "-i", host.key_path, "-p", str(host.port)]
    for key, value in options.items():
        argv += ["-o", f"{key}={value}"]
    return netns.wrap([*argv, f"{host.user}@{host.address}", *command], host.netns)


def check(name: str, hosts: int, gpu: str, gpus_per_host: int, topology: str = "nvlink",
          faults: Sequence[str | GpuFault] | None = None, subnet: str | IPv4Network | None = None,
          ) -> tuple[IPv4Network | None, list[GpuFault], str | None, dict[str, dict[str, Any]]]:
    """Everything `Lab.up` checks before it makes anything: (subnet, faults, topology file text,
    each host's GPU set), or a one-line TierkitError naming the flag."""
    check_name(name)
    wanted_subnet = network.check_subnet(subnet) if subnet is not None else None
    if not 1 <= hosts <= network.MAX_HOSTS:
        raise TierkitError(f"--hosts: {hosts} is out of range; use 1 to {network.MAX_HOSTS}")
    parsed = [f if isinstance(f, GpuFault) else parse_fault(f) for f in faults or ()]
    topology_text = check_topology(topology)
    host_names = [host_name(name, i) for i in range(1, hosts + 1)]
    strangers = sorted({f.host for f in parsed if f.host and f.host not in host_names})
    if strangers:
        raise TierkitError(f"--fault: no host {', '.join(strangers)} in this lab; its hosts "
                           f"are {', '.join(host_names)}")
    gpu_sets = {h: gpu_set(name, h, gpu, gpus_per_host, topology, topology_text, parsed)
                for h in host_names}
    return wanted_subnet, parsed, topology_text, gpu_sets


class HostStatus(BaseModel):
    """One host as `lab status` shows it."""

    name: str
    address: str
    state: Literal["running", "stopped"]
    link: Literal["up", "cut"]
    throttle: str | None = None  # the rate its cable is limited to (`lab fault --throttle`)
    ssh: bool | None  # None when the host is stopped
    memory_mib: float | None


class Phases:
    """`lab up` phases on stderr: a spinner while one runs, its time when it ends."""

    def __init__(self, quiet: bool) -> None:
        self.progress = Progress(SpinnerColumn(finished_text="[green]✓[/]"), TextColumn("{task.description}"),
                                 TimeElapsedColumn(), console=err_console, disable=quiet)

    @contextmanager
    def phase(self, text: str) -> Iterator[None]:
        task = self.progress.add_task(text, total=1)
        yield
        self.progress.update(task, completed=1)


class Lab:
    """A lab that exists on this machine (made by `Lab.up`, found by `Lab.get`)."""

    def __init__(self, record: LabRecord) -> None:
        self.record = record
        self.name = record.name
        self.netns = network.switch_netns(record.name)
        self.subnet = IPv4Network(record.subnet)
        self.dir = lab_dir(record.name)
        self.key_path = self.dir / "id_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.hosts_file = self.dir / "hosts.json"
        self.machines = {h.name: Machine(self.name, h.name, h.index) for h in record.hosts}
        self.hosts = [
            Host(name=h.name, address=h.address, port=22, user="root", key_path=str(self.key_path),
                 known_hosts=str(self.known_hosts), netns=self.netns)
            for h in record.hosts
        ]

    # ---------------------------------------------------------------- finding labs

    @classmethod
    def get(cls, name: str) -> Lab:
        """The lab `name`, or a one-line error."""
        record = load(check_name(name, "NAME"))
        if record is None:
            raise TierkitError(f"NAME: there is no lab {name!r}; see `tierkit lab status`, or make "
                               f"it with `tierkit lab up --name {name} ...`")
        return cls(record)

    @classmethod
    def all(cls) -> list[Lab]:
        return [cls(record) for record in map(load, names()) if record is not None]

    @classmethod
    def of_host(cls, host_name: str) -> tuple[Lab, Host]:
        """The lab a host belongs to (from its name, `<lab>-<n>`), and the host."""
        lab = cls.get(lab_of_host(host_name)[0])
        return lab, lab.host(host_name)

    def host(self, host_name: str) -> Host:
        for host in self.hosts:
            if host.name == host_name:
                return host
        raise TierkitError(f"HOST: lab {self.name} has no host {host_name!r}; its hosts are "
                           f"{', '.join(h.name for h in self.hosts)}")

    def to_json(self) -> dict[str, Any]:
        """What `lab up --json` prints and hosts.json holds (`tierkit.hosts.load_hosts` reads it)."""
        return {"lab": self.name, "netns": self.netns, "subnet": str(self.subnet),
                "hosts": [h.model_dump() for h in self.hosts]}

    # ---------------------------------------------------------------- up

    @classmethod
    def up(cls, name: str, hosts: int, gpu: str, gpus_per_host: int, topology: str = "nvlink",
           faults: Sequence[str | GpuFault] | None = None, *, runtime: bool = False,
           quiet: bool = False, subnet: str | IPv4Network | None = None) -> Lab:
        """Make the lab, or return it as it is if it exists with these settings.

        topology: nvlink (the GPU's own), pairs, pcie, or a captured `nvidia-smi topo -m` file.
        faults: GPU faults (tierkit.lab.gpuset). runtime: build the vLLM wheelhouse and the tiny
        model if missing (minutes, cold) so hosts see them; either way, whatever is already
        built is mounted at /opt/tierkit. subnet: the lab's /24 (a failover stack places its
        virtual IP in it); default: the pool's next free one.
        """
        wanted_subnet, parsed, topology_text, gpu_sets = check(name, hosts, gpu, gpus_per_host,
                                                               topology, faults, subnet)
        host_names = list(gpu_sets)
        wanted = LabRecord(name=name, subnet="0.0.0.0/32", image="", gpu=gpu,
                           gpus_per_host=gpus_per_host, topology=topology,
                           topology_text=topology_text, faults=[str(f) for f in parsed], hosts=[])
        asked = settings(hosts, gpu, gpus_per_host, topology, topology_text, wanted.faults)
        with locked(name):
            existing = load(name)
            if existing is not None and existing.ready and netns.exists(network.switch_netns(name)):
                lab = cls(existing)
                if existing.settings() != asked or wanted_subnet not in (None, lab.subnet):
                    raise TierkitError(f"--name: lab {name} exists with other settings; run "
                                       f"`tierkit lab down {name}` first, or use another name")
                down = [m.name for m in lab.machines.values() if not m.running()]
                for host in down:  # killed or stopped: `up` makes the lab whole again
                    lab.relaunch(host)
                if not quiet:
                    again = f"; booted {', '.join(down)} again" if down else "; nothing to do"
                    err_console.print(f"lab {name} is up already ({len(lab.hosts)} hosts){again}")
                return lab
            if existing is not None or lab_dir(name).exists():
                cls._teardown(name)  # what a crashed `lab up` (or a machine reboot) left
            return cls._make(wanted, host_names, gpu_sets, runtime, quiet, wanted_subnet)

    @classmethod
    def _make(cls, wanted: LabRecord, host_names: list[str], gpu_sets: dict[str, dict[str, Any]],
              runtime: bool, quiet: bool, subnet: IPv4Network | None = None) -> Lab:
        phases = Phases(quiet)
        with phases.progress:
            cached = image_ready()
            with phases.phase("image: Debian bookworm, systemd, sshd, playbook packages"
                              + (" (cached)" if cached else " (building, about a minute)")):
                image = ensure_image()
                wanted.image = str(image)
            if runtime:
                with phases.phase("runtime: vLLM wheelhouse and tiny model"):
                    share.build()
            with locked(MACHINE_LOCK):  # also keeps a concurrent last `lab down` off the share
                used = {IPv4Network(r.subnet) for r in map(load, names()) if r is not None}
                used |= network.live_subnets()
                if subnet is not None and subnet in used:
                    raise TierkitError(f"--subnet: {subnet} is another lab's; pick a free /24 or "
                                       f"take that lab down")
                subnet = subnet or network.allocate(used)
                wanted.subnet = str(subnet)
                wanted.hosts = [
                    HostRecord(name=h, index=i, address=str(network.host_address(subnet, i)),
                               mac=network.mac(subnet, i))
                    for i, h in enumerate(host_names, 1)
                ]
                save(wanted)  # from here on, `lab down` finds whatever this makes
                published = share.publish(share_dir())
            lab = cls(wanted)
            lab.dir.chmod(0o700)
            count = f"{len(host_names)} host{'s' if len(host_names) > 1 else ''}"
            with phases.phase(f"network: switch {lab.netns} on {subnet}, {count}"):
                network.create_switch(lab.name, subnet)
                for record in wanted.hosts:
                    network.attach_host(lab.name, record.name, record.index, subnet)
            with phases.phase("hosts: overlays, SSH keys, simulated GPUs"):
                lab._prepare_hosts(gpu_sets)
            with phases.phase("boot: systemd in each host"):
                for machine in lab.machines.values():
                    machine.start(share_dir())
            with phases.phase("ssh: host keys verified"):
                lab._wait_ssh(list(lab.machines.values()))
        wanted.ready = True
        save(wanted)
        missing = [at for at, path in published.items() if path is None]
        if missing and not quiet:
            err_console.print(f"note: not built yet, so empty in the hosts: "
                              f"{', '.join(f'{share.GUEST_DIR}/{at}' for at in missing)} "
                              f"(`tierkit assets build` makes them; they appear without a restart)")
        return lab

    def _prepare_hosts(self, gpu_sets: dict[str, dict[str, Any]]) -> None:
        """Mount each overlay and write the host's identity, keys and GPU set into it."""
        client_public = keys.generate(self.key_path, f"tierkit-lab-{self.name}")
        etc_hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" + "".join(
            f"{h.address}\t{h.name}\n" for h in self.hosts)
        known = []
        for host in self.hosts:
            machine = self.machines[host.name]
            machine.mount_root(Path(self.record.image))
            host_key = machine.root / "etc/ssh/ssh_host_ed25519_key"
            known.append(keys.known_hosts_line([host.name, host.address],
                                               keys.generate(host_key, f"root@{host.name}")))
            machine.write("/etc/hostname", f"{host.name}\n")
            machine.write("/etc/hosts", etc_hosts)
            machine.write("/etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
            machine.write("/root/.ssh/authorized_keys", client_public + "\n", 0o600)
            machine.write(GPU_SET_PATH, json.dumps(gpu_sets[host.name], indent=1) + "\n")
            for source, installed in SIMULATORS.items():
                machine.write(installed, source.read_text(), 0o755)
            machine.write(PERSISTENCED_UNIT_PATH, persistenced_unit(), 0o644)
        self.known_hosts.write_text("\n".join(known) + "\n")
        self.hosts_file.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def _wait_ssh(self, machines: list[Machine], timeout_s: float = SSH_READY_TIMEOUT_S) -> None:
        """Until sshd answers on every host and its key matches the pinned one."""
        def wait(machine: Machine) -> None:
            argv = ssh_argv(self.host(machine.name), ["true"], connect_timeout_s=2)
            deadline = time.monotonic() + timeout_s
            while True:
                proc = subprocess.run(argv, capture_output=True, text=True, check=False)
                if proc.returncode == 0:
                    return
                if not machine.running():
                    raise TierkitError(
                        f"lab: {machine.name} stopped while booting (nspawn exited "
                        f"{machine.exited()}: {machine.console_tail()}); see {machine.console_log}")
                if time.monotonic() > deadline:
                    raise TierkitError(
                        f"lab: {machine.name} does not answer SSH after {timeout_s:.0f} s "
                        f"({proc.stderr.strip() or 'no error'}); see {machine.console_log}")
                time.sleep(0.1)

        with ThreadPoolExecutor(max_workers=len(machines) or 1) as pool:
            list(pool.map(wait, machines))

    # ---------------------------------------------------------------- using a lab

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run(argv, **kwargs) inside the lab's switch namespace."""
        return subprocess.run(netns.wrap(list(argv), self.netns), **kwargs)

    def ssh(self, host_name: str, command: Sequence[str], **kwargs: Any
            ) -> subprocess.CompletedProcess[Any]:
        """Run a command on a host over SSH (host key verified)."""
        return subprocess.run(ssh_argv(self.host(host_name), command), **kwargs)

    def machine(self, host_name: str) -> Machine:
        self.host(host_name)
        return self.machines[host_name]

    def fault(self, host_name: str, action: FaultAction, rate: str | None = None) -> None:
        """stop: clean shutdown; kill: SIGKILL the whole host; reboot: a clean reboot from inside
        (`systemctl reboot`), waits until it answers SSH in its new boot; cut-link: unplug its cable;
        throttle: limit its cable to `rate` (e.g. 100mbit) both ways; restore: plug it back in at
        full speed and boot it if it is down (waits for SSH)."""
        machine = self.machine(host_name)
        if action == "stop":
            machine.stop()
        elif action == "kill":
            machine.kill()
        elif action == "reboot":
            self.reboot(host_name)
        elif action == "cut-link":
            network.set_link(self.name, machine.index, up=False)
        elif action == "throttle":
            if rate is None:
                raise TierkitError("--throttle: give a rate, e.g. --throttle 100mbit")
            network.throttle(self.name, host_name, machine.index, rate)
        elif action == "restore":
            network.set_link(self.name, machine.index, up=True)
            network.unthrottle(self.name, host_name, machine.index)
            self.relaunch(host_name)
        else:
            raise TierkitError(f"fault: {action!r} is not a fault; use one of "
                               f"{', '.join(FAULT_ACTIONS)}")

    def reboot(self, host_name: str, timeout_s: float = REBOOT_TIMEOUT_S) -> None:
        """`systemctl reboot` in the guest (its units stop as on any reboot; nspawn exits 133 and
        the host's supervisor boots it again), then wait until it answers SSH in its new boot,
        told apart by PID 1's start time (lab hosts share the machine's kernel and boot id)."""
        host = self.host(host_name)

        def boot_mark() -> str:
            argv = ssh_argv(host, ["cut -d' ' -f22 /proc/1/stat"], connect_timeout_s=2)
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            return proc.stdout.strip() if proc.returncode == 0 else ""

        before = boot_mark()
        if not before:
            raise TierkitError(f"lab: {host_name} does not answer SSH; `tierkit lab fault {host_name} --restore` boots a host that is down")
        subprocess.run(ssh_argv(host, ["systemctl reboot"]), capture_output=True, timeout=60, check=False)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = boot_mark()
            if now and now != before:
                return
            time.sleep(0.5)
        raise TierkitError(f"lab: {host_name} did not come back within {timeout_s:.0f} s of its reboot; "
                           f"see {self.machine(host_name).console_log}")

    def relaunch(self, host_name: str) -> None:
        """Boot a host that is down (stopped, killed, or gone with the machine), wait for SSH."""
        machine = self.machine(host_name)
        if not machine.running():
            machine.kill()  # a supervisor-less guest or nspawn leftovers
            network.forget_neighbour(self.name, network.host_address(self.subnet, machine.index))
            machine.mount_root(Path(self.record.image))
            share.publish(share_dir())
            machine.start(share_dir())
        self._wait_ssh([machine])

    def status(self) -> list[HostStatus]:
        def one(host: Host) -> HostStatus:
            machine = self.machines[host.name]
            running = machine.running()
            ssh_ok = None
            if running:
                argv = ssh_argv(host, ["true"], connect_timeout_s=2)
                ssh_ok = subprocess.run(argv, capture_output=True, check=False).returncode == 0
            return HostStatus(
                name=host.name, address=host.address,
                state="running" if running else "stopped",
                link="up" if network.link_up(self.name, machine.index) else "cut",
                throttle=network.throttled(self.name, machine.index),
                ssh=ssh_ok,
                memory_mib=round(machine.memory_bytes() / 2**20, 1) if running else None,
            )

        with ThreadPoolExecutor(max_workers=len(self.hosts) or 1) as pool:
            return list(pool.map(one, self.hosts))

    def memory_bytes(self) -> dict[str, int]:
        """Each host's memory (PSS of all its processes, shared pages split fairly)."""
        return {name: m.memory_bytes() for name, m in self.machines.items()}

    # ---------------------------------------------------------------- down

    @classmethod
    def down(cls, name: str) -> bool:
        """Remove everything the lab made; False when there was nothing. Works after a crash."""
        check_name(name, "NAME")
        with locked(name):
            found = cls._teardown(name)
        with locked(MACHINE_LOCK):
            if not names():  # the last lab on the machine
                share.release(share_dir())
        return found

    @classmethod
    def _teardown(cls, name: str) -> bool:
        """Processes, mounts, nspawn leftovers, namespaces, cgroups, then the lab's directory.

        Hosts are found from the record and, where it is gone or torn, by their namespaces and
        cgroups, so whatever a crash left is found too.
        """
        record = load(name)
        hosts = {h.name for h in record.hosts} if record else set()
        hosts |= {n.removeprefix("tkh-") for n in network.lab_host_namespaces(name)}
        lab_cgroups = [d for d in cgroups.lab_dirs(name) if d.exists()]
        hosts |= {p.name for d in lab_cgroups for p in d.iterdir() if p.is_dir()}
        directory = lab_dir(name)
        found = bool(hosts or lab_cgroups or directory.exists()
                     or netns.exists(network.switch_netns(name)))
        cgroups.kill(lab_cgroups)
        for host in hosts:
            Machine(name, host, 0).clear_nspawn_leftovers()
        mounts.unmount_under(directory)
        network.remove(name, sorted(hosts))
        cgroups.remove(lab_cgroups)
        for base in {d.parent for d in lab_cgroups}:
            try:
                base.rmdir()  # tierkit-lab/ itself, once no lab is left in it
            except OSError:
                pass
        if directory.exists():
            subprocess.run(["rm", "-rf", "--one-file-system", str(directory)], check=False)
        return found
