"""The lab's GPU simulators: stand-alone, standard-library scripts installed in each lab host.

`nvidia_smi.py` becomes /usr/bin/nvidia-smi and `all_reduce_perf.py` /usr/bin/all_reduce_perf;
both answer from the host's simulated GPU set, /etc/tierkit-lab.json (tierkit.lab.gpuset). The
driver role's stand-in packages may ship these same files. The simulated driver is the
version below; nvidia-smi reports it.
"""

from pathlib import Path

SIM_DRIVER_BRANCH = "580"
SIM_DRIVER_VERSION = "580.159.03"
SIM_CUDA_VERSION = "13.0"

GPU_SET_PATH = "/etc/tierkit-lab.json"

# source file -> where it is installed in a lab host
SIMULATORS: dict[Path, str] = {
    Path(__file__).with_name("nvidia_smi.py"): "/usr/bin/nvidia-smi",
    Path(__file__).with_name("all_reduce_perf.py"): "/usr/bin/all_reduce_perf",
}
