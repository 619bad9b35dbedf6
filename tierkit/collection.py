"""The roles and playbooks as the Ansible collection `tierkit.gpu`.

A standalone role may carry its own plugins (`library/`, `module_utils/`, `filter_plugins/`); a
collection keeps them in `plugins/` and calls them by fully qualified name (Ansible's guide
"Migrating Roles to Roles in Collections on Galaxy",
https://docs.ansible.com/ansible/latest/dev_guide/migrating_roles.html). `lay_out` writes that
layout from this repository's roles/ and playbooks/, rewriting what the move changes: module_utils
imports, module and filter names, and role names in playbooks and role dependencies.
`build` then runs `ansible-galaxy collection build` on it.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from tierkit import __version__
from tierkit.errors import TierkitError

NAMESPACE, NAME = "tierkit", "gpu"
FQ = f"{NAMESPACE}.{NAME}"
# A role's plugin folder -> where the collection keeps that kind of plugin.
PLUGIN_DIRS = {"library": "modules", "module_utils": "module_utils", "filter_plugins": "filter"}
TEXT_SUFFIXES = (".yml", ".yaml", ".j2")


def _filter_names(path: Path) -> list[str]:
    """The filter names a filter plugin file's `filters()` returns (its dict literal's keys)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == "filters":
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Dict):
                    names += [k.value for k in ret.value.keys if isinstance(k, ast.Constant)]
    return names


class Renamer:
    """Rewrites short names of this collection's roles, modules, module_utils and filters."""

    def __init__(self, roles: list[str], modules: list[str], utils: list[str], filters: list[str]) -> None:
        alt = "|".join
        self._role = re.compile(rf"(\brole:[ \t]*|\bname:[ \t]*|^[ \t]*-[ \t]+)({alt(roles)})[ \t]*$", re.M) if roles else None
        self._module = re.compile(rf"^([ \t]*(?:-[ \t]+)?)({alt(modules)})(?=:)", re.M) if modules else None
        self._filter = re.compile(rf"(\|\s*)({alt(filters)})\b(?!\.)") if filters else None
        self._util = re.compile(rf"\bansible\.module_utils\.({alt(utils)})\b") if utils else None

    def yaml_text(self, text: str) -> str:
        for pattern in (self._role, self._module, self._filter):
            if pattern is not None:
                text = pattern.sub(lambda m: f"{m.group(1)}{FQ}.{m.group(2)}", text)
        return text

    def python(self, text: str) -> str:
        if self._util is None:
            return text
        return self._util.sub(lambda m: f"ansible_collections.{NAMESPACE}.{NAME}.plugins.module_utils.{m.group(1)}", text)


def _renamer(roles_dir: Path) -> Renamer:
    roles = sorted(p.name for p in roles_dir.iterdir() if (p / "tasks").is_dir())
    modules = sorted(p.stem for p in roles_dir.glob("*/library/*.py"))
    utils = sorted(p.stem for p in roles_dir.glob("*/module_utils/*.py"))
    filters = sorted(n for p in roles_dir.glob("*/filter_plugins/*.py") for n in _filter_names(p))
    return Renamer(roles, modules, utils, filters)


def _copy_rewritten(src: Path, dest: Path, renamer: Renamer) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix in TEXT_SUFFIXES:
        dest.write_text(renamer.yaml_text(src.read_text()))
    elif src.suffix == ".py":
        dest.write_text(renamer.python(src.read_text()))
    else:
        shutil.copy2(src, dest)


def lay_out(root: Path, dest: Path, version: str = __version__) -> Path:
    """Write the collection's source tree under `dest` (which must not exist); returns `dest`."""
    roles_dir, source = root / "roles", root / "collection"
    renamer = _renamer(roles_dir)
    for path in sorted(roles_dir.rglob("*")):
        rel = path.relative_to(roles_dir)
        if not path.is_file() or "__pycache__" in rel.parts:
            continue
        role, top = rel.parts[0], rel.parts[1]
        if top in PLUGIN_DIRS:
            target = dest / "plugins" / PLUGIN_DIRS[top] / Path(*rel.parts[2:])
        else:
            target = dest / "roles" / rel
        _copy_rewritten(path, target, renamer)
    for path in sorted((root / "playbooks").glob("*.yml")):
        _copy_rewritten(path, dest / "playbooks" / path.name, renamer)
    galaxy = yaml.safe_load((source / "galaxy.yml").read_text())
    galaxy["version"] = version
    (dest / "galaxy.yml").write_text(yaml.safe_dump(galaxy, sort_keys=False))
    shutil.copy2(source / "README.md", dest / "README.md")
    (dest / "meta").mkdir(exist_ok=True)
    (dest / "meta" / "runtime.yml").write_text('---\nrequires_ansible: ">=2.15.0"\n')
    return dest


def _ansible_galaxy() -> str:
    """ansible-galaxy from this interpreter's environment (a venv's bin is not always on PATH)."""
    beside = Path(sys.executable).with_name("ansible-galaxy")
    return str(beside) if beside.exists() else "ansible-galaxy"


def build(root: Path, output_dir: Path) -> Path:
    """Lay the collection out in a temporary folder and build its tarball into `output_dir`."""
    if not output_dir.is_dir():
        raise TierkitError(f"--output: {output_dir} is not a directory; create it or pick another")
    with tempfile.TemporaryDirectory(prefix="tierkit-collection-") as tmp:
        tree = lay_out(root, Path(tmp) / "tree")
        done = subprocess.run([_ansible_galaxy(), "collection", "build", "--force", "--output-path", str(output_dir)],
                              cwd=tree, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise TierkitError(f"collection build: ansible-galaxy failed: {done.stderr.strip() or done.stdout.strip()}",
                           exit_code=1)
    return output_dir / f"{NAMESPACE}-{NAME}-{__version__}.tar.gz"
