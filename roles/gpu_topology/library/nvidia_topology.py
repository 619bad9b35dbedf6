#!/usr/bin/python
"""Ansible module nvidia_topology: read the GPU topology with nvidia-smi, check it against a tier."""

DOCUMENTATION = r"""
---
module: nvidia_topology
short_description: Read the GPU topology with nvidia-smi and check it against a tier
description:
  - Runs C(nvidia-smi topo -m), C(nvidia-smi nvlink -s) (only when some GPU pair is NVLinked)
    and C(nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version,pci.bus_id
    --format=csv,noheader,nounits), parses them with tierkit's parser (shipped as
    C(ansible.module_utils.tierkit_topology)) and returns the reading.
  - With expectations given, returns one message per way the host falls short in C(problems);
    the module itself never fails on problems, so the caller decides (the gpu_topology role
    asserts that the list is empty).
  - Reads only; never changes anything. Supports check mode.
  - Fails when nvidia-smi fails or prints something the parser cannot read.
options:
  expected_count:
    description: GPU count the host must have. Not checked when omitted.
    type: int
  expected_names:
    description: Names a GPU may report (C(--query-gpu=name)); every GPU must report one of them. Not checked when omitted.
    type: list
    elements: str
  tensor_parallel:
    description: Tensor-parallel size; TP groups are consecutive GPUs [0..tp-1], [tp..2tp-1], ...
    type: int
    default: 1
  require_nvlink:
    description:
      - Every GPU pair inside a TP group must be NVLinked (NV#), and no NVLink of a GPU in a group
        may be inactive. Only checked when I(tensor_parallel) > 1.
    type: bool
    default: false
  min_nvlinks:
    description: Least number of bonded NVLinks (the # of NV#) each pair in a TP group needs.
    type: int
    default: 0
  nvidia_smi:
    description: The nvidia-smi command, a name looked up on PATH or an absolute path.
    type: str
    default: nvidia-smi
author: tierkit
"""

EXAMPLES = r"""
- name: Read the topology and check it for TP=4 over NVLink
  nvidia_topology:
    expected_count: 4
    expected_names: [NVIDIA H100 80GB HBM3]
    tensor_parallel: 4
    require_nvlink: true
    min_nvlinks: 18
  register: topology

- name: Fail on any problem
  ansible.builtin.assert:
    that: topology.problems | length == 0
    fail_msg: "{{ topology.problems | join('; ') }}"
"""

RETURN = r"""
topology:
  description: The topo -m reading.
  returned: always
  type: dict
  sample: {"kind": "topo", "gpu_count": 2, "nvlink": [[0, 1, 4]], "devices": ["GPU0", "GPU1"],
           "matrix": [["X", "NV4"], ["NV4", "X"]],
           "gpus": [{"index": 0, "cpu_affinity": [[0, 23]], "numa_affinity": [0], "gpu_numa_id": null}],
           "nics": []}
nvlink_status:
  description: The nvlink -s reading; null when no GPU pair is NVLinked (nvlink -s is not run).
  returned: always
  type: dict
  sample: {"kind": "nvlink", "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-...",
           "links": [{"link": 0, "gbps": 26.562, "active": true}], "all_inactive": false}],
           "inactive": []}
gpus:
  description: One entry per GPU from --query-gpu.
  returned: always
  type: list
  elements: dict
  sample: [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-...", "memory_total_mib": 81559,
            "driver_version": "570.133.20", "pci_bus_id": "00000000:18:00.0"}]
problems:
  description: One message per expectation the host misses, naming the GPU pair or link; empty when it matches.
  returned: always
  type: list
  elements: str
  sample: ["GPU1-GPU3: PHB, need NVLink for tensor_parallel=4", "GPU0 link 3: inactive"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.tierkit_topology import (
    QUERY_GPU_FIELDS,
    TopologyParseError,
    check_tier,
    parse_nvlink,
    parse_query_gpu,
    parse_topo,
)


def _nvidia_smi(module, smi, args, parser):
    """Run nvidia-smi with args and parse its stdout; fail the task on error or unreadable output."""
    command = " ".join(["nvidia-smi"] + args)
    rc, out, err = module.run_command([smi] + args)
    if rc != 0:
        module.fail_json(msg=f"{command} failed (rc={rc}): {(err or out).strip()}", rc=rc)
    try:
        return parser(out)
    except TopologyParseError as exc:
        module.fail_json(msg=f"cannot read the output of {command}: {exc}", stdout=out)


def main():
    module = AnsibleModule(
        argument_spec={
            "expected_count": {"type": "int"},
            "expected_names": {"type": "list", "elements": "str", "default": []},
            "tensor_parallel": {"type": "int", "default": 1},
            "require_nvlink": {"type": "bool", "default": False},
            "min_nvlinks": {"type": "int", "default": 0},
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
        },
        supports_check_mode=True,
    )
    params = module.params
    smi = module.get_bin_path(params["nvidia_smi"], required=True)
    topo = _nvidia_smi(module, smi, ["topo", "-m"], parse_topo)
    nvlink = _nvidia_smi(module, smi, ["nvlink", "-s"], parse_nvlink) if topo.nvlink else None
    gpus = _nvidia_smi(module, smi, [f"--query-gpu={QUERY_GPU_FIELDS}",
                                     "--format=csv,noheader,nounits"], parse_query_gpu)
    problems = check_tier(
        topo, nvlink=nvlink, gpus=gpus, expected_count=params["expected_count"],
        expected_names=params["expected_names"], tensor_parallel=params["tensor_parallel"],
        require_nvlink=params["require_nvlink"], min_links=params["min_nvlinks"])
    module.exit_json(
        changed=False,
        topology=topo.to_json(),
        nvlink_status=None if nvlink is None else nvlink.to_json(),
        gpus=[gpu.to_json() for gpu in gpus],
        problems=problems,
    )


if __name__ == "__main__":
    main()
