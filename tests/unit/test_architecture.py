"""The package's shape: no import cycle, library code never imports the verbs, and the core never
asks which provider it has (everything provider-specific lives in tierkit/providers/)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tierkit"
CORE = [PACKAGE / "inventory.py", PACKAGE / "fleet.py", PACKAGE / "spec.py", *sorted((PACKAGE / "commands").glob("*.py"))]
PROVIDER_TEST = re.compile(r"is_lab|tierkit\.lab|from \.lab|LabProvider")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(known: set[str], name: str) -> str | None:
    """The tierkit module an import names: itself, or the package/module that holds it."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str, path: Path, known: set[str], *, top_level: bool) -> set[str]:
    """tierkit modules `name` imports: at import time only (top_level), or anywhere in the file
    (inside functions and TYPE_CHECKING blocks too)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    if top_level:
        nodes: list[ast.AST] = []
        pending = list(tree.body)
        while pending:  # module level, including if/try blocks, but not TYPE_CHECKING-only ones
            node = pending.pop()
            if isinstance(node, ast.If) and _is_type_checking(node):
                pending.extend(node.orelse)
            elif isinstance(node, (ast.If, ast.Try)):
                pending.extend([*node.body, *node.orelse, *getattr(node, "handlers", []), *getattr(node, "finalbody", [])])
            elif isinstance(node, ast.ExceptHandler):
                pending.extend(node.body)
            else:
                nodes.append(node)
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            hit = _resolve(known, target)
            if hit is not None and hit != name:
                found.add(hit)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_among_modules():
    mods = modules()
    known = set(mods)
    graph = {name: imports(name, path, known, top_level=True) for name, path in mods.items()}
    # A package's __init__ importing its own submodules is how a package is assembled, not a cycle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not (mods[name].name == "__init__.py" and t.startswith(name + "."))}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_spec_and_planner_depend_one_way():
    mods = modules()
    known = set(mods)
    assert "tierkit.spec" not in imports("tierkit.planner", mods["tierkit.planner"], known, top_level=False)


def test_library_code_never_imports_the_verbs():
    mods = modules()
    known = set(mods)
    offenders = {
        name: sorted(t for t in imports(name, path, known, top_level=False) if t.startswith("tierkit.commands"))
        for name, path in mods.items()
        if not name.startswith("tierkit.commands") and name != "tierkit.cli"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_core_never_asks_which_provider_it_has():
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
            for p in CORE for n, line in enumerate(p.read_text().splitlines(), 1) if PROVIDER_TEST.search(line)]
    assert hits == []


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_stack_directory_is_named_in_one_place():
    named = [p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")
             if re.search(r"""["']\.tierkit["']""", p.read_text())]
    assert named == ["tierkit/paths.py"]


def test_reading_a_spec_loads_no_deploy_machinery():
    """Validating a spec runs every provider's rules; provider modules import Pulumi (and the
    rest of the deploy machinery) only when they provision."""
    code = ("import sys, tierkit.stackfiles, tierkit.inventory, tierkit.smoke.from_spec; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'pulumi', 'pulumi_command', 'pulumi_aws', 'grpc', 'paramiko', 'ansible', 'ansible_runner'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"
