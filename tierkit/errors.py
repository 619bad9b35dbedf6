"""The one error type users see: a list of one-line problems, each naming a field and a fix."""

from __future__ import annotations


class TierkitError(Exception):
    """A user-facing failure. Each problem is printed as `error: <problem>`; the CLI exits 2."""

    def __init__(self, *problems: str, exit_code: int = 2) -> None:
        super().__init__("; ".join(problems))
        self.problems: list[str] = list(problems)
        self.exit_code = exit_code
