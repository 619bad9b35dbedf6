"""`dependents_first`: a node's work starts only after everything depending on it finished;
independent nodes overlap; a failure stops new work and leaves the rest undone."""

from __future__ import annotations

import threading
import time

from tierkit.rehearsal.schedule import dependents_first


class Boom(Exception):
    pass


def test_dependents_finish_before_their_dependencies_and_siblings_overlap() -> None:
    # c depends on a and b; d depends on c. Undo order: d, then c, then a and b together.
    graph = {"a": [], "b": [], "c": ["a", "b"], "d": ["c"]}
    spans: dict[str, tuple[float, float]] = {}
    lock = threading.Lock()

    def work(node: str) -> str:
        start = time.monotonic()
        time.sleep(0.2 if node in "ab" else 0.05)
        with lock:
            spans[node] = (start, time.monotonic())
        return node.upper()

    done: list[tuple[str, str]] = []
    assert dependents_first(graph, work, lambda n, r: done.append((n, r)), Boom) == []
    assert spans["d"][1] <= spans["c"][0]
    assert spans["c"][1] <= min(spans["a"][0], spans["b"][0])
    assert spans["a"][0] < spans["b"][1] and spans["b"][0] < spans["a"][1], "a and b should overlap"
    assert [n for n, _ in done][:2] == ["d", "c"] and dict(done)["a"] == "A"


def test_a_failure_stops_new_work_and_lets_running_work_finish() -> None:
    graph = {"base": [], "slow": ["base"], "bad": ["base"]}
    started: list[str] = []

    def work(node: str) -> None:
        started.append(node)
        if node == "bad":
            raise Boom(node)
        time.sleep(0.2)

    done: list[str] = []
    failures = dependents_first(graph, work, lambda n, _: done.append(n), Boom)
    assert [str(f) for f in failures] == ["bad"]
    assert done == ["slow"], "the running sibling finished"
    assert "base" not in started, "nothing depended-on starts after a failure"


def test_an_unexpected_error_propagates() -> None:
    def work(node: str) -> None:
        raise KeyError(node)

    try:
        dependents_first({"x": []}, work, lambda n, r: None, Boom)
    except KeyError as exc:
        assert exc.args == ("x",)
    else:
        raise AssertionError("KeyError swallowed")


def test_empty_graph() -> None:
    assert dependents_first({}, lambda n: None, lambda n, r: None, Boom) == []
