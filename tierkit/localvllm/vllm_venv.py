"""A virtualenv with vLLM for the CPU, installed from the wheelhouse alone.

The install runs with `--no-index` and without the machine's pip configuration, so it succeeds
only if the wheelhouse is complete: the same check the air-gapped lab hosts depend on. PyPI's
torchvision, torchaudio and torchcodec break beside torch 2.13.0+cpu ("operator torchvision::nms
does not exist") and vLLM serves text without them, so they are removed after the install.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tierkit.cache import build_log, ensure_dir, is_ready, keyed_path, recipe_key, run_logged
from tierkit.errors import TierkitError
from tierkit.localvllm.wheelhouse import (
    TARGET_PYTHON,
    VLLM_REQUIREMENT,
    ensure_wheelhouse,
    wheelhouse_recipe,
)

REMOVED_PACKAGES = ("torchvision", "torchaudio", "torchcodec")


def base_python() -> Path:
    """The interpreter the venv is made from: the one running tierkit, outside any venv."""
    major, minor = sys.version_info[:2]
    return Path(sys.base_prefix) / "bin" / f"python{major}.{minor}"


def venv_recipe() -> dict[str, Any]:
    """What the venv depends on (its cache key): the wheelhouse, the interpreter, the removals."""
    return {
        "wheelhouse": recipe_key(wheelhouse_recipe()),
        "requirement": VLLM_REQUIREMENT,
        "interpreter": str(base_python()),
        "python": ".".join(map(str, sys.version_info[:3])),
        "removed": list(REMOVED_PACKAGES),
    }


def venv_path() -> Path:
    """Where the vLLM venv for the current recipe lives (built or not)."""
    return keyed_path("vllm-venv", venv_recipe())


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def hermetic_pip_env() -> dict[str, str]:
    """This process's environment without any pip configuration (files or PIP_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def offline_env() -> dict[str, str]:
    """This process's environment for running the venv's code: no Hugging Face downloads, no
    telemetry, no vLLM usage reports (the lab's vLLM talks to nothing but its clients)."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }


def ensure_vllm_venv() -> Path:
    """The vLLM venv, building the wheelhouse and installing from it first if needed."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" != TARGET_PYTHON:
        raise TierkitError(
            f"vllm venv: the wheelhouse holds wheels for Python {TARGET_PYTHON}, tierkit runs on "
            f"{sys.version.split()[0]}; run tierkit with a Python {TARGET_PYTHON} interpreter"
        )
    recipe = venv_recipe()
    path = venv_path()
    if is_ready(path):
        return path
    wheelhouse = ensure_wheelhouse()
    log = build_log(path.name)
    env = hermetic_pip_env()

    def build(work: Path) -> None:
        python = str(venv_python(work))
        run_logged([str(base_python()), "-m", "venv", str(work)], log, what="vllm venv")
        run_logged(
            [python, "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse),
             VLLM_REQUIREMENT],
            log, what="vllm venv", env=env,
        )
        run_logged([python, "-m", "pip", "uninstall", "-y", *REMOVED_PACKAGES], log,
                   what="vllm venv", env=env)
        run_logged([python, "-c", "import torch, vllm; print('vllm', vllm.__version__, 'torch', "
                    "torch.__version__)"], log, what="vllm venv", env=env)

    return ensure_dir(path, recipe, build, relocatable=False)
