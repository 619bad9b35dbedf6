"""Running one command as pulumi-command's local provider does: `interpreter + [command]`, in
its directory, with its environment and stdin, both streams captured."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

DEFAULT_INTERPRETER = ["/bin/sh", "-c"]
Log = Callable[[str], None]


@dataclass
class CommandResult:
    stdout: str
    stderr: str
    seconds: float


class CommandFailed(Exception):
    def __init__(self, name: str, code: int, tail: str, seconds: float = 0.0) -> None:
        super().__init__(f"{name}: command exited {code}")
        self.name, self.code, self.tail, self.seconds = name, code, tail, seconds


def _pump(stream: IO[bytes], sink: list[str], show: Log | None, prefix: str) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        sink.append(line)
        if show is not None:
            show(f"{prefix}{line.rstrip()}")
    stream.close()


def execute(
    name: str,
    command: str,
    *,
    interpreter: list[str] | None,
    directory: str | None,
    environment: dict[str, str],
    stdin: str | None,
    logging: str,
    log: Log,
) -> CommandResult:
    """Run `interpreter + [command]`, stream its lines as `logging` allows, and capture both
    streams (trailing newline trimmed, as pulumi-command does). Raises CommandFailed; its tail
    is the last stderr lines when they were not already shown."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [*(interpreter or DEFAULT_INTERPRETER), command],
        cwd=directory,
        env={**os.environ, **environment},
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out: list[str] = []
    err: list[str] = []
    show_out = log if logging in ("stdout", "stdoutAndStderr") else None
    show_err = log if logging in ("stderr", "stdoutAndStderr") else None
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, out, show_out, f"  {name} | "), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err, show_err, f"  {name} | "), daemon=True),
    ]
    for t in pumps:
        t.start()
    if stdin:
        assert proc.stdin is not None
        try:
            proc.stdin.write(stdin.encode())
        except BrokenPipeError:
            pass
        proc.stdin.close()
    code = proc.wait()
    for t in pumps:
        t.join()
    if code != 0:
        tail = "".join(err[-8:]).strip() if show_err is None else ""
        raise CommandFailed(name, code, tail, time.monotonic() - started)
    return CommandResult("".join(out).removesuffix("\n"), "".join(err).removesuffix("\n"), time.monotonic() - started)
