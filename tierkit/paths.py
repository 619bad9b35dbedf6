"""What tierkit keeps on this machine for a stack: the one definition of `.tierkit/<stack>/`.

    .tierkit/<stack>/
        known_hosts        host keys pinned by `tierkit wait-ssh` (a cache: the pins travel in its output)
        inventory/         the rendered Ansible inventory (`tierkit inventory`, `tierkit configure`)
        logs/              one log per playbook run
        smoke.json         the smoke report of the last deploy
        rehearsal.json     the rehearsal's state: each command's inputs hash and outputs (secret ones encrypted)

None of it is a Pulumi state; `tierkit down` removes it. Everything but rehearsal.json is a
cache the steps rebuild from their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_DIR = ".tierkit"


@dataclass(frozen=True)
class StackPaths:
    """The files of one stack under `root` (the project directory, or "." for relative paths)."""

    root: Path
    stack: str

    @classmethod
    def for_stack_file(cls, root: Path, stack: str | None, file: Path | None) -> StackPaths:
        """Paths for `--stack NAME`, or for `--file Pulumi.NAME.yaml` (named after the file)."""
        name = stack or (file.stem.removeprefix("Pulumi.") if file else "stack")
        return cls(root, name)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR / self.stack

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def inventory_dir(self) -> Path:
        return self.state_dir / "inventory"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def playbook_log(self, playbook: str) -> Path:
        """`logs/<playbook stem>.log`: the log of one playbook run."""
        return self.logs_dir / f"{Path(playbook).stem}.log"

    @property
    def smoke_report(self) -> Path:
        return self.state_dir / "smoke.json"

    @property
    def history(self) -> Path:
        """`history.jsonl`: each `tierkit up`'s figures and step times (tierkit/history.py)."""
        return self.state_dir / "history.jsonl"

    @property
    def rehearsal_record(self) -> Path:
        return self.state_dir / "rehearsal.json"
