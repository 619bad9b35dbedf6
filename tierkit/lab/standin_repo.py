"""A local apt repository standing in for NVIDIA's CUDA repository, for lab hosts.

Lab hosts have no GPU and reach no registry, yet the nvidia_driver and nccl roles install for
real: from this repository, built here with dpkg-deb and served over http inside the lab's
switch namespace. Lab hosts run Debian 12, so it is NVIDIA's debian12 repository: its package
names come from the support matrix's debian12 entry (tierkit/support.py), the same names the
role installs on a real Debian 12 server. It holds

- cuda-keyring: the repository's signing key (/usr/share/keyrings/cuda-archive-keyring.gpg) and
  its `deb [signed-by=...] URL /` entry in /etc/apt/sources.list.d/cuda-debian12-<arch>.list, as
  NVIDIA's keyring package does (its apt preference file is left out: its content is
  unconfirmed); Release is signed (InRelease, Release.gpg) with a key generated at build time;
- nvidia-driver-pinning-<branch>: the branch lock (an apt preference for the branch's versions);
- nvidia-driver-cuda (compute only): the lab's simulated nvidia-smi, which answers only once the
  kernel module is loaded; nvidia-kernel-open-dkms / nvidia-kernel-dkms: the "module", a unit the
  package enables that runs at the next boot, so an install needs the role's reboot;
  nvidia-open / cuda-drivers: the full driver metapackages;
- nvidia-persistenced: a daemon that turns persistence on while it runs with --persistence-mode,
  under a unit that (like NVIDIA's) starts it with --no-persistence-mode;
- nvidia-fabricmanager: nv-fabricmanager (`--version` as the real one prints it; refuses to run
  beside another driver version) and its unit; libnvidia-nscq, at the same version;
- libnccl2, libnccl-dev at <nccl>-1+cuda<cuda> (nccl.h with the version macros);
- linux-headers-<this kernel>: lab hosts share this machine's kernel, whose headers no mirror has.

`ensure_repo(url)` builds it once per recipe under /var/cache/tierkit; `serve(...)` runs an http
server for it in a network namespace.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from tierkit import support
from tierkit.cache import ensure_dir, keyed_path
from tierkit.errors import TierkitError
from tierkit.lab.gpuset import FABRIC_MANAGER_UNIT
from tierkit.lab.sim import PERSISTENCED_UNIT_PATH, SIM_DRIVER_BRANCH, persistenced_unit
from tierkit.lab.sim import SIM_DRIVER_VERSION as DRIVER_VERSION

SIM_DIR = Path(__file__).resolve().parent / "sim"
NCCL_VERSION = "2.26.2"
NCCL_CUDA_VERSION = "12.8"
# The lab's hosts run Debian 12, so the stand-in is NVIDIA's debian12 repository.
REPO_OS = "debian12"
KEYRING_DEB = "cuda-keyring_1.1-1_all.deb"
KEYRING_PATH = "/usr/share/keyrings/cuda-archive-keyring.gpg"
MODULE_UNIT = "tierkit-standin-nvidia-module.service"
MODULE_FLAG = "/run/tierkit-standin/nvidia-module-loaded"
PORT = 8089

NVIDIA_SMI_WRAPPER = f"""#!/bin/sh
# tierkit stand-in for the NVIDIA driver: the userspace tools answer once the kernel module is
# loaded, which {MODULE_UNIT} does at boot.
if [ ! -e {MODULE_FLAG} ]; then
    echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running." >&2
    exit 9
fi
exec /usr/lib/tierkit-standin/nvidia-smi "$@"
"""

MODULE_UNIT_TEXT = f"""[Unit]
Description=Load the NVIDIA kernel module (tierkit stand-in)
DefaultDependencies=no
Before=sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'mkdir -p {Path(MODULE_FLAG).parent} && touch {MODULE_FLAG}'

[Install]
WantedBy=sysinit.target
"""

FABRIC_MANAGER = """#!/usr/bin/python3
# tierkit stand-in for nv-fabricmanager: reports its version; runs only beside the same driver.
import subprocess, sys, time
VERSION = "{version}"
if "--version" in sys.argv or "-v" in sys.argv:
    print("Fabric Manager version is : " + VERSION)
    sys.exit(0)
smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
if smi.returncode != 0 or set(smi.stdout.split()) != {{VERSION}}:
    sys.stderr.write("fabric manager version is incompatible with NVSwitch driver. Please update "
                     "with matching NVIDIA driver package\\n")
    sys.exit(1)
print("Successfully configured all the available NVSwitches to route GPU NVLink traffic.")
sys.stdout.flush()
while True:
    time.sleep(3600)
"""

FABRIC_MANAGER_UNIT_TEXT = """[Unit]
Description=NVIDIA fabric manager service (tierkit stand-in)
After=network-online.target {module}

[Service]
Type=simple
ExecStart=/usr/bin/nv-fabricmanager -c /usr/share/nvidia/nvswitch/fabricmanager.cfg
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

# What a pinning package does (its real content is unconfirmed): prefer the branch's versions.
PINNING_TEXT = """# tierkit stand-in for NVIDIA's driver branch lock
Package: nvidia-* libnvidia-* libcuda* firmware-nvidia-*
Pin: version {branch}.*
Pin-Priority: 1000
"""

NCCL_H = """/* tierkit stand-in for NCCL's header: the version macros only. */
#ifndef NCCL_H_
#define NCCL_H_
#define NCCL_MAJOR {major}
#define NCCL_MINOR {minor}
#define NCCL_PATCH {patch}
#define NCCL_SUFFIX ""
#define NCCL_VERSION_CODE {code}
#endif
"""


@dataclass
class Package:
    """One .deb: control fields and the files it drops (path -> (text, mode))."""

    name: str
    version: str
    description: str
    arch: str = "amd64"
    files: dict[str, tuple[str | bytes, int]] = field(default_factory=dict)
    control: dict[str, str] = field(default_factory=dict)
    postinst: str | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def deb_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def repo_arch() -> str:
    """NVIDIA's directory name for this architecture (x86_64, sbsa)."""
    return {"aarch64": "sbsa"}.get(platform.machine(), platform.machine())


def _names(kind: str) -> list[str]:
    """The debian12 package names of `kind` for the simulated branch, from the support matrix."""
    matrix = support.load()
    names = support.nvidia_packages(matrix["support_naming"][matrix["os"][REPO_OS]["naming"]], SIM_DRIVER_BRANCH, kind)
    return [names] if isinstance(names, str) else names


def packages(url: str, keyring: bytes, kernel: str) -> list[Package]:
    """Every package of the repository; `keyring` is the binary public key (a signed-by keyring)."""
    branch = SIM_DRIVER_BRANCH
    arch = deb_arch()
    version = f"{DRIVER_VERSION}-1"
    exact = f"(= {version})"
    nccl = f"{NCCL_VERSION}-1+cuda{NCCL_CUDA_VERSION}"
    major, minor, patch = (int(p) for p in NCCL_VERSION.split("."))
    smi = (SIM_DIR / "nvidia_smi.py").read_text()
    (pinning,) = _names("pinning")
    tools, open_module = _names("compute_open")
    _, closed_module = _names("compute_proprietary")
    (full_open,) = _names("full_open")
    (full_closed,) = _names("full_proprietary")
    fabricmanager, nscq = _names("fabricmanager")
    enable = "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then systemctl enable {unit} >/dev/null 2>&1 || true; fi\n"
    modules = [
        Package(name, version, f"NVIDIA {flavour} kernel module, branch {branch} (tierkit stand-in: loads at the next boot)",
                arch, {f"/lib/systemd/system/{MODULE_UNIT}": (MODULE_UNIT_TEXT, 0o644)},
                {"Conflicts": other}, enable.format(unit=MODULE_UNIT))
        for name, flavour, other in ((open_module, "open", closed_module), (closed_module, "proprietary", open_module))
    ]
    source = f"deb [signed-by={KEYRING_PATH}] {url.rstrip('/')}/ /\n"
    return [
        Package("cuda-keyring", "1.1-1", "GPG keyring and source of the CUDA repository (tierkit stand-in)",
                "all", {KEYRING_PATH: (keyring, 0o644),
                        f"/etc/apt/sources.list.d/cuda-{REPO_OS}-{repo_arch()}.list": (source, 0o644)}),
        Package(pinning, version, f"Keeps apt on NVIDIA driver branch {branch} (tierkit stand-in)", "all",
                {f"/etc/apt/preferences.d/{pinning}": (PINNING_TEXT.format(branch=branch), 0o644)}),
        Package(tools, version, f"NVIDIA driver {branch}, compute only: nvidia-smi (tierkit stand-in)", arch, {
                    "/usr/lib/tierkit-standin/nvidia-smi": (smi, 0o755),
                    "/usr/bin/nvidia-smi": (NVIDIA_SMI_WRAPPER, 0o755),
                }, {"Depends": f"nvidia-persistenced {exact}"}),
        Package("nvidia-persistenced", version, "NVIDIA persistence daemon (tierkit stand-in)", arch, {
                    "/usr/bin/nvidia-persistenced": ((SIM_DIR / "nvidia_persistenced.py").read_text(), 0o755),
                    PERSISTENCED_UNIT_PATH: (persistenced_unit(after=MODULE_UNIT), 0o644),
                }, postinst=enable.format(unit="nvidia-persistenced.service")),
        *modules,
        Package(full_open, version, f"NVIDIA driver {branch}, open modules, full (tierkit stand-in)", arch,
                control={"Depends": f"{tools} {exact}, {open_module} {exact}"}),
        Package(full_closed, version, f"NVIDIA driver {branch}, proprietary modules, full (tierkit stand-in)", arch,
                control={"Depends": f"{tools} {exact}, {closed_module} {exact}"}),
        Package(fabricmanager, version, "NVIDIA fabric manager for NVSwitch systems (tierkit stand-in)", arch, {
                    "/usr/bin/nv-fabricmanager": (FABRIC_MANAGER.format(version=DRIVER_VERSION), 0o755),
                    f"/lib/systemd/system/{FABRIC_MANAGER_UNIT}": (
                        FABRIC_MANAGER_UNIT_TEXT.format(module=MODULE_UNIT), 0o644),
                    "/usr/share/nvidia/nvswitch/fabricmanager.cfg": ("LOG_LEVEL=4\n", 0o644),
                }),
        Package(nscq, version, "NVSwitch query library (tierkit stand-in)", arch,
                {f"/usr/share/doc/{nscq}/VERSION": (f"{DRIVER_VERSION}\n", 0o644)}),
        Package("libnccl2", nccl, "NVIDIA Collective Communication Library runtime (tierkit stand-in)", arch,
                {"/usr/share/doc/libnccl2/VERSION": (f"{NCCL_VERSION} cuda{NCCL_CUDA_VERSION}\n", 0o644)}),
        Package("libnccl-dev", nccl, "NVIDIA Collective Communication Library headers (tierkit stand-in)", arch,
                {"/usr/include/nccl.h": (NCCL_H.format(major=major, minor=minor, patch=patch,
                                                       code=major * 10000 + minor * 100 + patch), 0o644)},
                {"Depends": f"libnccl2 (= {nccl})"}),
        Package(f"linux-headers-{kernel}", "1", f"Headers for kernel {kernel} (tierkit stand-in)", arch,
                {f"/usr/src/linux-headers-{kernel}/STANDIN": ("headers stand-in for DKMS\n", 0o644)}),
    ]


def build_deb(pkg: Package, out_dir: Path, work: Path) -> Path:
    """dpkg-deb --build one package into out_dir."""
    root = work / pkg.name
    (root / "DEBIAN").mkdir(parents=True)
    control = {"Package": pkg.name, "Version": pkg.version, "Architecture": pkg.arch,
               "Maintainer": "tierkit lab <lab@tierkit.invalid>", "Section": "non-free/libs",
               "Priority": "optional", **pkg.control, "Description": pkg.description}
    (root / "DEBIAN" / "control").write_text("".join(f"{k}: {v}\n" for k, v in control.items()))
    if pkg.postinst:
        (root / "DEBIAN" / "postinst").write_text(pkg.postinst)
        (root / "DEBIAN" / "postinst").chmod(0o755)
    for path, (text, mode) in pkg.files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode() if isinstance(text, str) else text)
        target.chmod(mode)
    deb = out_dir / pkg.filename
    _run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], "dpkg-deb")
    return deb


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    except FileNotFoundError:
        raise TierkitError(f"stand-in repo: {cmd[0]} is not installed; run scripts/setup.sh") from None
    if done.returncode != 0:
        raise TierkitError(f"stand-in repo: {what} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout


def _hashes(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    return {"MD5sum": hashlib.md5(data).hexdigest(), "SHA1": hashlib.sha1(data).hexdigest(),
            "SHA256": hashlib.sha256(data).hexdigest()}


def packages_index(debs: list[Path]) -> str:
    """The Packages file: each .deb's control stanza plus Filename, Size and hashes."""
    stanzas = []
    for deb in sorted(debs):
        control = _run(["dpkg-deb", "--field", str(deb)], "dpkg-deb --field").rstrip("\n")
        extra = {"Filename": f"./{deb.name}", "Size": str(deb.stat().st_size), **_hashes(deb)}
        stanzas.append(control + "\n" + "".join(f"{k}: {v}\n" for k, v in extra.items()))
    return "\n".join(stanzas)


def release_file(root: Path, names: list[str]) -> str:
    lines = ["Origin: tierkit stand-in", "Label: tierkit stand-in for NVIDIA's CUDA repository",
             f"Architectures: {deb_arch()} all", f"Date: {formatdate(usegmt=True)}"]
    for title, algo in (("MD5Sum", "md5"), ("SHA256", "sha256")):
        lines.append(f"{title}:")
        for name in names:
            data = (root / name).read_bytes()
            lines.append(f" {hashlib.new(algo, data).hexdigest()} {len(data)} {name}")
    return "\n".join(lines) + "\n"


@contextmanager
def _gnupg() -> Iterator[dict[str, str]]:
    """A throwaway GnuPG home (short path: gpg-agent's socket has a length limit)."""
    home = tempfile.mkdtemp(prefix="tk-gpg-", dir="/tmp")
    env = {**os.environ, "GNUPGHOME": home}
    try:
        yield env
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def build_repo(root: Path, url: str, kernel: str) -> None:
    """Build the whole repository into `root`."""
    with _gnupg() as env:
        uid = "tierkit stand-in repository <standin@tierkit.invalid>"
        _run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
              uid, "ed25519", "sign", "never"], "gpg key generation", env)
        keyring = subprocess.run(["gpg", "--export", uid], capture_output=True, env=env, check=True).stdout
        with tempfile.TemporaryDirectory() as work:
            debs = [build_deb(p, root, Path(work)) for p in packages(url, keyring, kernel)]
        index = packages_index(debs)
        (root / "Packages").write_text(index)
        (root / "Packages.gz").write_bytes(gzip.compress(index.encode(), mtime=0))
        (root / "Release").write_text(release_file(root, ["Packages", "Packages.gz"]))
        for args, out in ((["--clearsign"], "InRelease"), (["--armor", "--detach-sign"], "Release.gpg")):
            _run(["gpg", "--batch", "--yes", "--local-user", uid, *args, "--output", str(root / out),
                  str(root / "Release")], f"gpg {out}", env)


def repo_recipe(url: str, kernel: str) -> dict[str, Any]:
    """What the repository's content depends on (its cache key)."""
    sources = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in sorted(SIM_DIR.glob("*.py"))}
    this = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    matrix = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(support.MATRIX_DIR.rglob("*.yml")))).hexdigest()[:12]
    return {"url": url, "kernel": kernel, "driver": DRIVER_VERSION, "nccl": f"{NCCL_VERSION}+cuda{NCCL_CUDA_VERSION}",
            "arch": deb_arch(), "sim": sources, "builder": this, "matrix": matrix}


def ensure_repo(url: str, kernel: str | None = None) -> Path:
    """The repository for `url` (the address hosts fetch it from), built once per recipe."""
    kernel = kernel or platform.release()
    recipe = repo_recipe(url, kernel)
    return ensure_dir(keyed_path("standin-repo", recipe), recipe, lambda work: build_repo(work, url, kernel))


def repo_url(address: str, port: int = PORT) -> str:
    return f"http://{address}:{port}"


def _answers(netns: str, address: str, port: int) -> bool:
    probe = f"import socket; socket.create_connection(({address!r}, {port}), 1).close()"
    return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", probe],
                          capture_output=True, check=False).returncode == 0


@contextmanager
def serve(root: Path, netns: str, address: str, port: int = PORT) -> Iterator[str]:
    """Serve `root` over http at address:port inside `netns` for the duration of the block."""
    if _answers(netns, address, port):
        raise TierkitError(f"stand-in repo: {address}:{port} in {netns} is already taken; stop what serves there")
    server = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "http.server", "--bind", address,
         "--directory", str(root), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers(netns, address, port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise TierkitError(f"stand-in repo: the http server did not start on {address}:{port} in {netns}")
            time.sleep(0.1)
        yield repo_url(address, port)
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

