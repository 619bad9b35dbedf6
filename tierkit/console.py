"""Shared terminal output: rich consoles for humans, plain JSON for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Write `data` as indented JSON on stdout, nothing else (scripts parse it)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_errors(problems: list[str]) -> None:
    """One `error: ...` line per problem, on stderr, never wrapped."""
    for problem in problems:
        err_console.print(f"error: {problem}", markup=False, soft_wrap=True)
