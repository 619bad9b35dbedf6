"""pyproject.toml declares exactly what tierkit needs to run, and requirements.txt pins it.

Every third-party module imported anywhere in tierkit/ (top level or inside a function) belongs
to a declared distribution; every declared distribution is imported somewhere (or is a program
tierkit runs, listed below with the reason); requirements.txt pins each declared distribution at
a version inside pyproject's range, and pins nothing else but the test and lint tools."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tierkit"
# Files tierkit ships but never imports: they run under another interpreter.
RUN_ELSEWHERE = {"make_tiny_model.py": "runs in the lab's vLLM venv (torch, transformers)"}
# Declared, not imported: programs tierkit runs.
RUN_NOT_IMPORTED = {"ansible-core": "ansible-playbook, which tierkit.ansible runs through ansible-runner"}
TOOLS_HEADING = "# Test and lint tools"


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def pins() -> tuple[dict[str, str], set[str]]:
    """(runtime pins: name -> version, the tools' names) from requirements.txt."""
    runtime: dict[str, str] = {}
    tools: set[str] = set()
    section = runtime
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() == TOOLS_HEADING:
            section = {}
            continue
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", text)
        assert m, f"requirements.txt: {line!r} is not NAME==VERSION"
        section[canonicalize_name(m[1])] = m[2]
        if section is not runtime:
            tools.add(canonicalize_name(m[1]))
    return runtime, tools


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module name -> the files (relative) importing it, outside the stdlib and tierkit."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name in RUN_ELSEWHERE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "tierkit":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_import_is_declared_and_every_declaration_used() -> None:
    dists = importlib.metadata.packages_distributions()
    want = declared()
    imported: set[str] = set()
    for module, files in sorted(third_party_imports().items()):
        owners = {canonicalize_name(d) for d in dists.get(module, [])}
        assert owners, f"{module} (imported by {sorted(files)}) belongs to no installed distribution"
        assert owners & set(want), f"{module} (imported by {sorted(files)}): declare {sorted(owners)} in pyproject.toml"
        imported |= owners & set(want)
    unused = set(want) - imported - set(RUN_NOT_IMPORTED)
    assert not unused, f"declared in pyproject.toml but imported nowhere in tierkit/: {sorted(unused)}"
    assert set(RUN_NOT_IMPORTED) <= set(want)


def test_requirements_pin_every_declaration_inside_its_range() -> None:
    runtime, tools = pins()
    want = declared()
    assert set(runtime) == set(want), (
        f"requirements.txt's runtime pins and pyproject.toml differ: only pinned {sorted(set(runtime) - set(want))}, "
        f"only declared {sorted(set(want) - set(runtime))}"
    )
    for name, req in want.items():
        assert req.specifier.contains(runtime[name]), f"{name}=={runtime[name]} is outside pyproject's {req.specifier}"
    assert tools and not tools & set(want)


def test_the_installed_versions_are_the_pinned_ones() -> None:
    runtime, _ = pins()
    for name, version in runtime.items():
        assert importlib.metadata.version(name) == version, f"{name}: installed {importlib.metadata.version(name)}, pinned {version}"
