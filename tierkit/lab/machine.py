"""One lab host: an overlay root over the shared image, booted by systemd-nspawn in its netns.

The host's root is an overlayfs mount (the image read-only below, the host's own upper layer
above) at `<lab dir>/hosts/<host>/root`; the lab writes the host's files there before it boots.
`start()` hands the host to supervise.sh, detached from the caller: it joins the host's cgroups
and runs nspawn, again after each guest reboot (exit code 133). The host is running while any
process is left in its cgroups.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tierkit.errors import TierkitError
from tierkit.lab import cgroups, mounts, network
from tierkit.lab.share import GUEST_DIR
from tierkit.lab.state import host_dir
from tierkit.netns import NETNS_DIR

SUPERVISOR = Path(__file__).with_name("supervise.sh")
NSPAWN_RUN_DIR = Path("/run/systemd/nspawn")
JOIN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Machine:
    lab: str
    name: str
    index: int

    @property
    def dir(self) -> Path:
        return host_dir(self.lab, self.name)

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    @property
    def exit_file(self) -> Path:
        return self.dir / "exit-code"

    @property
    def cgroups(self) -> list[Path]:
        return cgroups.host_dirs(self.lab, self.name)

    def mount_root(self, image: Path) -> None:
        """The overlay root; an existing mount (a host that was stopped) is kept."""
        upper, work = self.dir / "upper", self.dir / "work"
        for d in (upper, work, self.root):
            d.mkdir(parents=True, exist_ok=True)
        if not mounts.is_mount_point(self.root):
            mounts.mount("-t", "overlay", "overlay", "-o",
                         f"lowerdir={image},upperdir={upper},workdir={work}", str(self.root))

    def write(self, path: str, content: str, mode: int = 0o644) -> None:
        """Write a file into the host (through its overlay root), creating its directories."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)

    def nspawn_args(self, share: Path) -> list[str]:
        return [
            "--boot", "--register=no", "--keep-unit", "--capability=CAP_NET_ADMIN",
            f"--machine={self.name}",
            f"--network-namespace-path={NETNS_DIR / network.host_netns(self.name)}",
            "--console=read-only", "--link-journal=no", "--resolv-conf=off", "--timezone=off",
            f"--bind-ro={share}:{GUEST_DIR}",
            f"--directory={self.root}",
        ]

    def start(self, share: Path) -> None:
        """Boot the host in the background; returns once its supervisor is in its cgroups."""
        self.clear_nspawn_leftovers()
        self.exit_file.unlink(missing_ok=True)
        dirs = self.cgroups
        cgroups.create(dirs)
        with open(self.console_log, "ab") as log:
            proc = subprocess.run(
                ["setsid", "--fork", "sh", str(SUPERVISOR), str(self.exit_file), *map(str, dirs),
                 "--", *self.nspawn_args(share)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False,
            )
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while proc.returncode == 0 and not self.running() and self.exited() is None:
            if time.monotonic() > deadline:  # the detached supervisor never joined its cgroups
                break
            time.sleep(0.01)
        if proc.returncode != 0 or not (self.running() or self.exited() is not None):
            raise TierkitError(f"lab: could not start {self.name} (setsid exited "
                               f"{proc.returncode}); see {self.console_log}")

    def pids(self) -> set[int]:
        return cgroups.pids(self.cgroups)

    def running(self) -> bool:
        return bool(self.pids())

    def exited(self) -> int | None:
        """nspawn's last exit code once the supervisor gave up, else None."""
        try:
            return int(self.exit_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def nspawn_pid(self) -> int | None:
        for pid in self.pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd-nspawn":
                    return pid
            except FileNotFoundError:
                continue
        return None

    def stop(self, timeout_s: float = 20.0) -> None:
        """Shut the guest down cleanly (nspawn passes SIGTERM on as a halt); kill on timeout."""
        pid = self.nspawn_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout_s
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.05)
        self.kill()

    def kill(self) -> None:
        """SIGKILL everything the host runs: supervisor, nspawn and the guest."""
        cgroups.kill(self.cgroups)
        self.clear_nspawn_leftovers()

    def clear_nspawn_leftovers(self) -> None:
        """/run is no tmpfs here: nspawn's per-machine directories outlive a killed host."""
        for leftover in NSPAWN_RUN_DIR.glob(f"*/{self.name}"):
            shutil.rmtree(leftover, ignore_errors=True)

    def memory_bytes(self) -> int:
        return cgroups.memory_bytes(self.cgroups)

    def console_tail(self, lines: int = 5) -> str:
        try:
            text = self.console_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no console output)"
        return " | ".join(line.strip() for line in text[-lines:] if line.strip())
