"""The lab's GPU simulators: stand-alone, standard-library scripts installed in each lab host.

`nvidia_smi.py` becomes /usr/bin/nvidia-smi and `all_reduce_perf.py` /usr/bin/all_reduce_perf;
both answer from the host's simulated GPU set, /etc/tierkit-lab.json (tierkit.lab.gpuset).
`nvidia_persistenced.py` becomes /usr/bin/nvidia-persistenced, with the unit below (installed,
not enabled, like a driver package leaves it). The driver role's stand-in packages ship these
same files. The simulated driver is the version below; nvidia-smi reports it.
"""

from pathlib import Path

SIM_DRIVER_BRANCH = "580"
SIM_DRIVER_VERSION = "580.159.03"
SIM_CUDA_VERSION = "13.0"

GPU_SET_PATH = "/etc/tierkit-lab.json"
NVIDIA_SMI = "/usr/bin/nvidia-smi"
ALL_REDUCE_PERF = "/usr/bin/all_reduce_perf"

# source file -> where it is installed in a lab host
SIMULATORS: dict[Path, str] = {
    Path(__file__).with_name("nvidia_smi.py"): NVIDIA_SMI,
    Path(__file__).with_name("all_reduce_perf.py"): ALL_REDUCE_PERF,
    Path(__file__).with_name("nvidia_persistenced.py"): "/usr/bin/nvidia-persistenced",
}

PERSISTENCED_UNIT_PATH = "/lib/systemd/system/nvidia-persistenced.service"


def persistenced_unit(after: str = "") -> str:
    """The daemon's unit. Like NVIDIA's packaged one it starts the daemon with persistence off;
    the driver role's drop-in turns it on. `after`: a unit it must follow (the stand-in module)."""
    return (
        "[Unit]\nDescription=NVIDIA Persistence Daemon (tierkit lab)\n"
        + (f"After={after}\n" if after else "")
        + "\n[Service]\nType=simple\n"
        "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose\n"
        "\n[Install]\nWantedBy=multi-user.target\n"
    )
