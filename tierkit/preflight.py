"""Preflight decisions: what stops a host before anything is installed, one line per problem,
each naming its fix. Pure: it judges facts the preflight role gathered (read-only) and changes
nothing. The preflight role's filter plugin (roles/preflight/filter_plugins/tierkit_preflight.py)
is a symlink to this file, so it needs the standard library only.

`problems(facts)` takes a dict with the keys of FACT_KEYS (see its comments) and returns the
refusal lines, in a fixed order.
"""

from __future__ import annotations

from typing import Any

FACT_KEYS = (
    "os",                    # "Ubuntu 22.04", as the host reports it
    "arch",                  # x86_64 | sbsa | ... (NVIDIA's repository directory names)
    "supported_archs",       # the support matrix's archs for this OS; [] when the OS is not in it
    "python",                # the Python vLLM needs on this OS ("3.11"), "" when the OS is not supported
    "python_present",        # that interpreter is installed
    "python_installable",    # apt has a candidate for it
    "vllm",                  # the pinned vLLM version
    "driver_active",         # the driver nvidia-smi reports, "" when none answers
    "driver_minimum",        # the lowest driver that runs the vLLM wheel's CUDA
    "wheel_cuda",            # the CUDA the vLLM wheel is built for
    "driver_replace",        # the operator lets tierkit replace an active driver that is too old
    "secure_boot",           # Secure Boot is on
    "dkms_key_enrolled",     # DKMS's signing key is enrolled as a MOK
    "cache_path",            # where the weights go
    "mounts",                # [{mount, size_available}] (Ansible's mounts fact)
    "download_bytes",        # the weights to download (0: nothing to download)
    "kernel",                # the running kernel release
    "headers_present",       # /lib/modules/<kernel>/build exists
    "headers_installable",   # apt has a candidate for linux-headers-<kernel>
    "lock_held",             # the dpkg lock stayed held through the bounded wait
    "lock_wait_s",           # how long that wait was
)

# Free space the weights need, as a multiple of their download size (temporary files, the
# download's own bookkeeping, headroom for a second revision).
DISK_FACTOR = 1.2
GIB = 1024 ** 3


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def free_bytes(mounts: list[dict[str, Any]], path: str) -> int:
    """Free space on the filesystem holding `path`: the mount point that is its longest prefix."""
    def holds(mount: str) -> bool:
        return mount == "/" or path == mount or path.startswith(mount.rstrip("/") + "/")
    holding = [m for m in mounts if holds(m["mount"])]
    return int(max(holding, key=lambda m: len(m["mount"]))["size_available"]) if holding else 0


def problems(facts: dict[str, Any]) -> list[str]:
    """The refusal lines for one host (empty: it may proceed)."""
    missing = [key for key in FACT_KEYS if key not in facts]
    if missing:
        raise ValueError(f"preflight facts lack {', '.join(missing)}")
    f = facts
    out: list[str] = []
    if not f["supported_archs"]:
        out.append(f"{f['os']} is not supported; use Ubuntu 22.04, Ubuntu 24.04 or Debian 12 "
                   f"(`tierkit support` lists what runs together)")
    elif f["arch"] not in f["supported_archs"]:
        out.append(f"architecture {f['arch']} is not supported on {f['os']}; use "
                   f"{' or '.join(f['supported_archs'])}")
    if f["python"] and not f["python_present"] and not f["python_installable"]:
        out.append(f"vLLM {f['vllm']} needs Python {f['python']}, which is not installed and apt offers no "
                   f"python{f['python']}; enable the distribution's repository that carries it "
                   f"(Ubuntu 22.04: jammy-updates, universe) and re-run")
    driver = f["driver_active"]
    if driver and _version(driver) < _version(f["driver_minimum"]) and not f["driver_replace"]:
        out.append(f"NVIDIA driver {driver} is active, and vLLM {f['vllm']}'s wheel (CUDA {f['wheel_cuda']}) "
                   f"needs >= {f['driver_minimum']}; upgrade the driver, or let tierkit replace it "
                   f"(preflight_driver_replace: true; the host reboots)")
    installs_driver = not driver or _version(driver) < _version(f["driver_minimum"])
    if installs_driver and f["secure_boot"] and not f["dkms_key_enrolled"]:
        out.append("Secure Boot is on and DKMS's signing key is not enrolled, so the NVIDIA module built "
                   "here would not load; enroll it (`mokutil --import /var/lib/dkms/mok.pub`, reboot, "
                   "confirm in MokManager) or turn Secure Boot off")
    needed = int(f["download_bytes"] * DISK_FACTOR)
    free = free_bytes(f["mounts"], f["cache_path"])
    if f["download_bytes"] and free < needed:
        out.append(f"{f['cache_path']}: {free / GIB:.1f} GiB free, the weights need "
                   f"{needed / GIB:.1f} GiB ({f['download_bytes'] / GIB:.1f} GiB download x {DISK_FACTOR}); "
                   f"free space there or point the model cache at a larger disk")
    if installs_driver and not f["headers_present"] and not f["headers_installable"]:
        out.append(f"no kernel headers for the running kernel {f['kernel']} and apt offers none "
                   f"(linux-headers-{f['kernel']}); boot a kernel whose headers the distribution "
                   f"ships, or install them, then re-run")
    if f["lock_held"]:
        out.append(f"the dpkg lock stayed held for {f['lock_wait_s']} s (another apt or unattended-upgrades "
                   f"run); let it finish (`ps -C apt,apt-get,dpkg,unattended-upgr`) and re-run")
    return out


class FilterModule:
    """The preflight role's filter: `{{ facts | preflight_problems }}`."""

    def filters(self) -> dict[str, Any]:
        return {"preflight_problems": problems}
