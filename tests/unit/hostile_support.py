"""Running `tierkit` in-process for the hostile-input tests: exit code, stdout, stderr, seconds.

The corpus has well over a hundred cases; a subprocess each would cost seconds apiece on a busy
2-core machine, so `run_cli` calls the console entry point the way `tierkit` does.
"""

from __future__ import annotations

import io
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from tierkit import cli


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def errors(self) -> list[str]:
        return self.stderr.strip().splitlines()


def run_cli(*args: str) -> Outcome:
    """`tierkit ARGS...` in this process."""
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    rc = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            cli.main(list(args))
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
    return Outcome(rc, out.getvalue(), err.getvalue(), time.monotonic() - started)


def assert_refused(outcome: Outcome, *needles: str, max_seconds: float = 5.0) -> None:
    """Exit 2, only `error: <field>: ...; <fix>` lines, each short, every needle present, fast."""
    assert outcome.rc == 2, (outcome.rc, outcome.stdout[-500:], outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stderr + outcome.stdout
    lines = outcome.errors
    assert lines, outcome
    for line in lines:
        assert line.startswith("error: "), lines
        assert "; " in line or line.count(":") >= 2, line
        assert len(line) <= 400, f"{len(line)} characters: {line[:200]}..."
    for needle in needles:
        assert needle in outcome.stderr, (needle, outcome.stderr)
    assert outcome.seconds < max_seconds, outcome.seconds
