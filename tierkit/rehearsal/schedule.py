"""Undoing a graph in reverse: each node's work starts only after every node that depends on it
has finished, independent ones in parallel (what `tierkit down` does with the recorded deletes).

Going forwards needs no scheduler here: the Pulumi SDK registers a resource only once its inputs
and dependencies have resolved, so the rehearsal's creates already run in dependency order."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

R = TypeVar("R")


def dependents_first(
    dependencies: Mapping[str, list[str]],
    work: Callable[[str], R],
    done: Callable[[str, R], None],
    failure: type[Exception],
) -> list[Exception]:
    """Run `work(node)` for every node of `dependencies` (node -> the nodes it depends on) once
    no node depending on it is pending or running, then `done(node, result)`.

    A `failure` raised by `work` stops the scheduling: what already runs finishes, nothing new
    starts (its dependencies stay undone). Returns the failures, in the order they happened."""
    dependents = {n: {o for o, deps in dependencies.items() if n in deps} for n in dependencies}
    pending = dict.fromkeys(dependencies)  # a set in the record's order
    failures: list[Exception] = []
    with ThreadPoolExecutor(max_workers=max(1, len(dependencies))) as pool:
        running: dict[Future[R], str] = {}
        while pending or running:
            if not failures:
                busy = set(pending) | set(running.values())
                for node in [n for n in pending if not dependents[n] & busy]:
                    del pending[node]
                    running[pool.submit(work, node)] = node
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                node = running.pop(fut)
                try:
                    result = fut.result()
                except failure as exc:
                    failures.append(exc)
                    continue
                done(node, result)
    return failures
