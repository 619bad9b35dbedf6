"""The lab's GPU simulators: stand-alone, standard-library scripts installed in each lab host.

`nvidia_smi.py` becomes /usr/bin/nvidia-smi and `all_reduce_perf.py` /usr/bin/all_reduce_perf;
both answer from the host's simulated GPU set, /etc/tierkit-lab.json (tierkit.lab.gpuset). The
driver role's stand-in packages may ship these same files. The simulated driver is the
version below; nvidia-smi reports it.
"""

from pathlib import Path

SIM_DRIVER_BRANCH = "570"
SIM_DRIVER_VERSION = "570.133.20"
SIM_CUDA_VERSION = "12.8"

GPU_SET_PATH = "/etc/tierkit-lab.json"
NVIDIA_SMI = "/usr/bin/nvidia-smi"
ALL_REDUCE_PERF = "/usr/bin/all_reduce_perf"

# source file -> where it is installed in a lab host
SIMULATORS: dict[Path, str] = {
    Path(__file__).with_name("nvidia_smi.py"): NVIDIA_SMI,
    Path(__file__).with_name("all_reduce_perf.py"): ALL_REDUCE_PERF,
}
