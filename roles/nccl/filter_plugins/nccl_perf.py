"""Parse the output of nccl-tests' `all_reduce_perf` (and its sibling `*_perf` binaries).

The one reader of that output: the nccl role's gate uses it as the `nccl_perf` filter, and
Python (tests, tierkit) imports `parse_perf` from this file. The format is nccl-tests'
`src/common.cu`: a `# nThread N nGpus G ...` header, one table row per message size, then

    # Out of bounds values : 0 OK
    # Avg bus bandwidth    : 135.094

Older builds print the summary without the leading `#`, and output gathered by mpirun may carry
a `[1,0]<stdout>:` prefix on each line; both are accepted. Output without the two summary lines
(a crashed or truncated run) is refused rather than read as zero.
"""

from __future__ import annotations

import re
from typing import Any

_PREFIX = r"^(?:\[[\d,]+\]<stdout>:)?\s*#?\s*"
_OOB = re.compile(_PREFIX + r"Out of bounds values\s*:\s*(\d+)\s*(OK|FAILED)?\s*$")
_AVG = re.compile(_PREFIX + r"Avg bus bandwidth\s*:\s*(\S+)(?:\s+(OK|FAILED))?\s*$")
_HEADER = re.compile(_PREFIX + r"nThread\s+(\d+)\s+nGpus\s+(\d+)\b")
_RANK = re.compile(_PREFIX + r"Rank\s+\d+\b.*\bdevice\s+\d+\s+\[[^\]]*\]\s+(.+?)\s*$")
# size count type redop root time algbw busbw #wrong time algbw busbw #wrong
_ROW = re.compile(
    r"^(?:\[[\d,]+\]<stdout>:)?\s*(\d+)\s+(\d+)\s+(\w+)\s+(\w+)\s+(-?\d+)\s+"
    r"(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$"
)
_FAILURE = re.compile(r"(failure|NCCL WARN|error:|Segmentation fault)", re.I)


class NcclOutputError(ValueError):
    """The text is not a complete nccl-tests run."""


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "N/A" in the in-place #wrong column of some collectives
        return None


def parse_perf(text: str) -> dict[str, Any]:
    """Read one `*_perf` run.

    Returns out_of_bounds (int), avg_busbw_gbs (float), gpus (ranks listed, or nThread x nGpus
    from the header, or None), devices (names per rank), rows (per message size: bytes,
    busbw out-of-place / in-place, #wrong out-of-place / in-place) and peak_busbw_gbs.
    Raises NcclOutputError when either summary line is missing or unreadable.
    """
    out_of_bounds: int | None = None
    avg: float | None = None
    header_gpus: int | None = None
    devices: list[str] = []
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for line in text.splitlines():
        if (m := _OOB.match(line)) is not None:
            out_of_bounds = int(m.group(1))
        elif (m := _AVG.match(line)) is not None:
            avg = _number(m.group(1))
            if avg is None:
                raise NcclOutputError(f"unreadable average bus bandwidth {m.group(1)!r}")
        elif (m := _HEADER.match(line)) is not None:
            header_gpus = int(m.group(1)) * int(m.group(2))
        elif (m := _RANK.match(line)) is not None:
            devices.append(m.group(1))
        elif (m := _ROW.match(line)) is not None:
            g = m.groups()
            rows.append({
                "bytes": int(g[0]),
                "busbw_gbs": _number(g[7]),
                "wrong": _number(g[8]),
                "busbw_inplace_gbs": _number(g[11]),
                "wrong_inplace": _number(g[12]),
            })
        elif _FAILURE.search(line) and not line.lstrip().startswith("#"):
            failures.append(line.strip())
    if out_of_bounds is None or avg is None:
        missing = " and ".join(
            name for name, value in (("'Out of bounds values'", out_of_bounds), ("'Avg bus bandwidth'", avg))
            if value is None
        )
        detail = f"; it reported: {failures[0]}" if failures else ""
        raise NcclOutputError(f"no {missing} line: the run did not complete{detail}")
    peaks = [v for r in rows for v in (r["busbw_gbs"], r["busbw_inplace_gbs"]) if v is not None]
    return {
        "out_of_bounds": out_of_bounds,
        "avg_busbw_gbs": avg,
        "gpus": len(devices) or header_gpus,
        "devices": devices,
        "rows": rows,
        "peak_busbw_gbs": max(peaks, default=0.0),
    }


def nccl_perf(text: str) -> dict[str, Any]:
    """Ansible filter: `{{ run.stdout | nccl_perf }}`; unreadable output fails the task."""
    from ansible.errors import AnsibleFilterError

    try:
        return parse_perf(text)
    except NcclOutputError as exc:
        raise AnsibleFilterError(f"all_reduce_perf output: {exc}") from None


class FilterModule:
    """Registers `nccl_perf` for the nccl role."""

    def filters(self) -> dict[str, Any]:
        return {"nccl_perf": nccl_perf}
