"""The mock-runtime harness on tiny programs: graph, secret rules, exports, invokes, errors."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_command import local

from tierkit.rehearsal.runtime import (
    Backend,
    Registration,
    apply_secret_rules,
    has_secret,
    is_sealed,
    reveal,
    run_program,
    seal,
)


class Echo(Backend):
    """Every Command's stdout is its create; invokes answer with their arguments."""

    def __init__(self) -> None:
        self.invokes: list[tuple[str, dict[str, Any]]] = []

    def create(self, reg: Registration) -> tuple[str, dict[str, Any]]:
        if not reg.custom:
            return "", {}
        return f"{reg.name}-id", {**reg.inputs, "stdout": reg.plain("create"), "stderr": ""}

    def invoke(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        self.invokes.append((token, args))
        return {"answer": args.get("q", 0) + 1}


class Box(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("demo:test:Box", name)
        self.inner = local.Command("inner", create="echo inner", opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})


def test_graph_secrets_and_exports() -> None:
    def program() -> None:
        box = Box("box")
        key = pulumi.Config("demo").require_secret("key")
        uses = local.Command("uses", create=box.inner.stdout.apply(lambda s: f"use {s}"),
                             environment={"KEY": key}, opts=pulumi.ResourceOptions(additional_secret_outputs=["stderr"]))
        pulumi.export("stdout", uses.stdout)
        pulumi.export("env", uses.environment)
        pulumi.export("plain", pulumi.Config("demo").get("plain"))

    run = run_program(program, Echo(), project="demo", stack="dev",
                      config={"demo:key": "s3cret", "demo:plain": "visible"}, secret_keys=["demo:key"])
    assert run.error is None
    box, inner, uses = run.named("box", component=True), run.named("inner"), run.named("uses")
    assert inner.parent == box.urn and uses.parent == box.parent and uses.parent.endswith("pulumi:pulumi:Stack::demo-dev")
    assert inner.urn in uses.dependencies
    assert uses.plain("create") == "use echo inner"
    assert has_secret(uses.inputs["environment"]) and uses.plain("environment") == {"KEY": "s3cret"}
    state = run.states[uses.urn]
    assert is_sealed(state["environment"]) and is_sealed(state["stderr"]) and not is_sealed(state["stdout"])
    assert run.exports["stdout"].value == "use echo inner" and not run.exports["stdout"].secret
    assert run.exports["env"].secret and run.exports["plain"].value == "visible"
    assert [(t, n) for t, n, _ in run.constructed][:2] == [("demo:test:Box", "box"), ("command:local:Command", "inner")]


def test_invokes_reach_the_backend() -> None:
    backend = Echo()

    def program() -> None:
        got = pulumi.runtime.invoke("demo:index:ask", {"q": 41})
        pulumi.export("answer", got.value["answer"])

    run = run_program(program, backend, project="demo", stack="dev", config={})
    assert run.error is None
    assert backend.invokes == [("demo:index:ask", {"q": 41})]
    assert run.exports["answer"].value == 42


def test_program_errors_are_returned_not_raised() -> None:
    def program() -> None:
        raise ValueError("bad spec")

    run = run_program(program, Echo(), project="demo", stack="dev", config={})
    assert isinstance(run.error, ValueError) and run.registrations == [] and run.exports == {}


def test_secret_helpers() -> None:
    sealed = seal("x")
    assert seal(sealed) == sealed and is_sealed(sealed) and not is_sealed({"value": "x"})
    nested = {"a": [1, seal({"b": seal(2)})], "c": 3}
    assert has_secret(nested) and not has_secret({"a": [1, {"b": 2}]})
    assert reveal(nested) == {"a": [1, {"b": 2}], "c": 3}
    reg = Registration("u", "t", "n", None, [], True, {"env": seal("k"), "plain": "p"}, ["out"])
    rules = apply_secret_rules(reg, {"env": "k", "plain": "p", "out": "o"})
    assert is_sealed(rules["env"]) and is_sealed(rules["out"]) and rules["plain"] == "p"
