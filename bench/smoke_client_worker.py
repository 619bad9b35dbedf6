#!/usr/bin/env python3
"""A long-lived benchmark client for bench/smoke_vs_vllm_bench.py: one run per line of stdin.

usage: PYTHON bench/smoke_client_worker.py vllm|tierkit

`vllm` (run it with the vLLM venv's python) runs `vllm.benchmarks.serve`, the code behind
`vllm bench serve`; `tierkit` runs the `tierkit` command. Each line on stdin is a JSON list of
command-line arguments; each run is answered with one JSON line on this process's original stdout:
`{"error": null | "reason", "run_cpu_s": ..., "figures": {...}}` (vllm) or `{"error": ...}`
(tierkit, whose figures and CPU time are in its --json file). Everything the tools print goes to
/dev/null, so the two can never mix with the answers.

Living on between runs is the point: vllm bench's imports alone take about 7 CPU seconds, and a
fresh process per run would leave the server idle that long between the two runs of a pair.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

VLLM_MARKERS = {"start": "Starting main benchmark run", "end": "Serving Benchmark Result"}


class MarkedOutput:
    """vllm bench's sys.stdout: drops the text, noting the CPU time when each marker appears."""

    def __init__(self, markers: dict[str, str]) -> None:
        self.markers = markers
        self.cpu_at: dict[str, float] = {}

    def write(self, text: str) -> int:
        for name, marker in self.markers.items():
            if name not in self.cpu_at and marker in text:
                self.cpu_at[name] = time.process_time()
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def vllm_runner() -> Callable[[list[str]], dict[str, Any]]:
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)

    def run(argv: list[str]) -> dict[str, Any]:
        sys.stdout = out = MarkedOutput(VLLM_MARKERS)
        result = main(parser.parse_args(argv))
        figures = {k: v for k, v in result.items() if isinstance(v, (int, float))}
        return {"figures": figures, "run_cpu_s": out.cpu_at["end"] - out.cpu_at["start"]}

    return run


def tierkit_runner() -> Callable[[list[str]], dict[str, Any]]:
    from tierkit.cli import app

    def run(argv: list[str]) -> dict[str, Any]:
        code = app(argv, standalone_mode=False)
        return {"error": f"tierkit exited {code}" if code else None}

    return run


def serve(run: Callable[[list[str]], dict[str, Any]], answers: TextIO) -> None:
    def answer(reply: dict[str, Any]) -> None:
        answers.write(json.dumps(reply) + "\n")
        answers.flush()

    answer({"ready": True})
    for line in sys.stdin:
        try:
            answer({"error": None, **run(json.loads(line))})
        except (Exception, SystemExit) as exc:  # the run's failure is the answer; the worker lives on
            answer({"error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    runners = {"vllm": vllm_runner, "tierkit": tierkit_runner}
    if len(sys.argv) != 2 or sys.argv[1] not in runners:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(runners)}")
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    serve(runners[sys.argv[1]](), answers)


if __name__ == "__main__":
    main()
