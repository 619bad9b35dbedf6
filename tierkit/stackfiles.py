"""What a verb is pointed at: a stack's spec (`--stack NAME` or `--file PATH`), its hosts, and
where its files go on this machine (tierkit/paths.py)."""

from __future__ import annotations

from pathlib import Path

from tierkit import providers
from tierkit.errors import TierkitError
from tierkit.hosts import Host, read_hosts
from tierkit.paths import StackPaths
from tierkit.spec import TierSpec, load_spec_file, load_stack


def load(stack: str | None, file: Path | None) -> TierSpec:
    """The spec named by --stack or --file (exactly one)."""
    if (stack is None) == (file is None):
        raise TierkitError("--stack/--file: give exactly one; e.g. --stack single-gpu or --file stacks/Pulumi.single-gpu.yaml")
    return load_stack(stack) if stack is not None else load_spec_file(file)


def paths(stack: str | None, file: Path | None) -> StackPaths:
    """The stack's files under `.tierkit/` of the working directory."""
    return StackPaths.for_stack_file(Path("."), stack, file)


def resolve_hosts(spec: TierSpec, hosts_file: Path | None) -> list[Host]:
    """The stack's hosts: --hosts (a file, or - for standard input), else what its provider knows
    of the running stack."""
    if hosts_file is not None:
        return read_hosts(hosts_file)
    return providers.get(spec).hosts(spec)
