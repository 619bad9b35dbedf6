"""The Pulumi CLI, driven the way a CI job would: the exact `pulumi` invocations of `tierkit up`,
`tierkit down` and `tierkit preview --diff`.

Every command runs in the project root (where Pulumi.yaml names `stackConfigDir: stacks`, so the
CLI reads and writes `stacks/Pulumi.<stack>.yaml`) with `--stack NAME`:

    pulumi stack select --create --stack NAME          # select the stack, creating it the first time
    pulumi config set --secret tierkit:apiKey --stack NAME    # value on stdin, from $TIERKIT_API_KEY
    pulumi config set --secret tierkit:hfToken --stack NAME   # value on stdin, from $HF_TOKEN
    pulumi up --yes --skip-preview [--refresh] --event-log FILE --stack NAME   # or: pulumi preview --diff --stack NAME
    pulumi stack output --json --stack NAME            # outputs; secrets stay "[secret]"
    pulumi destroy --yes --skip-preview --stack NAME   # tierkit down

A secret's value reaches the CLI on standard input only, never its argument list, and the CLI's
environment carries neither secret variable (the program reads the secrets from the stack's
encrypted config). `pulumi config set` reads the value from standard input when none is given on
the command line (https://www.pulumi.com/docs/iac/cli/commands/pulumi_config_set/). The engine's
events, one JSON object a line in the `--event-log` file (the Automation API reads the same file),
give each step's time for history and JUnit (tierkit/deploy_report.py EngineEvents).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierkit.errors import TierkitError
from tierkit.inventory import HF_TOKEN_ENV, VLLM_API_KEY_ENV

# Secret config keys and the environment variables `tierkit up` takes their values from.
SECRET_CONFIG = {"tierkit:apiKey": VLLM_API_KEY_ENV, "tierkit:hfToken": HF_TOKEN_ENV}
Log = Callable[[str], None]


@dataclass(frozen=True)
class PulumiCli:
    executable: str
    root: Path
    stack: str
    log: Log

    def environment(self) -> dict[str, str]:
        """The CLI's environment: this one, without the secrets' variables."""
        return {k: v for k, v in os.environ.items() if k not in SECRET_CONFIG.values()}

    def run(self, *args: str, stdin: str | None = None, capture: bool = False) -> str:
        """`pulumi ARGS --stack NAME`: its output streams to the log, or with `capture` its stdout
        is returned (stderr logged). Raises TierkitError (exit 1) when it fails."""
        argv = [self.executable, *args, "--stack", self.stack]
        self.log(f"$ pulumi {' '.join(args)} --stack {self.stack}")
        if capture:
            done = subprocess.run(argv, cwd=self.root, env=self.environment(), text=True, input=stdin,
                                  capture_output=True)
            code, out, shown = done.returncode, done.stdout, done.stderr
            for line in shown.splitlines():
                self.log(f"  {line}")
        else:
            proc = subprocess.Popen(argv, cwd=self.root, env=self.environment(), text=True,
                                    stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if stdin is not None:
                assert proc.stdin is not None
                proc.stdin.write(stdin)
                proc.stdin.close()
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:  # streamed: an `up` runs for many minutes
                lines.append(line)
                self.log(f"  {line.rstrip()}")
            code, out = proc.wait(), "".join(lines)
            shown = out
        if code != 0:
            last = [line.strip() for line in shown.splitlines() if line.strip()][-1:] or ["no output"]
            raise TierkitError(f"pulumi {args[0]}: exited {code} ({last[0]}); see the output above", exit_code=1)
        return out

    def select(self) -> None:
        self.run("stack", "select", "--create")

    def set_secrets(self, environ: dict[str, str] | None = None) -> list[str]:
        """`pulumi config set --secret KEY` for each secret whose variable is set; returns the keys."""
        env = os.environ if environ is None else environ
        done = []
        for key, var in SECRET_CONFIG.items():
            value = env.get(var)
            if value:
                self.run("config", "set", "--secret", key, stdin=value)
                done.append(key)
            else:
                self.log(f"{key}: ${var} not set; the stack's config keeps its value, if any")
        return done

    def outputs(self) -> dict[str, Any]:
        text = self.run("stack", "output", "--json", capture=True)
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise TierkitError(f"pulumi stack output: not JSON ({text.strip()[:80]!r})", exit_code=1) from None

    def up(self, events: Callable[[dict[str, Any]], None] | None = None, *, refresh: bool = False) -> dict[str, Any]:
        """Select, set the secrets, `up` (`--refresh`: re-read the resources first); `events` gets
        each engine event of the up (failed or not)."""
        self.select()
        self.set_secrets()
        with tempfile.TemporaryDirectory(prefix="tierkit-events-") as tmp:
            log = Path(tmp) / "events.jsonl"
            try:
                self.run("up", "--yes", "--skip-preview", *(["--refresh"] if refresh else []), "--event-log", str(log))
            finally:
                if events is not None:
                    read_events(log, events)
        return self.outputs()

    def preview(self) -> None:
        self.select()
        self.set_secrets()
        self.run("preview", "--diff")

    def destroy(self) -> None:
        self.select()
        self.run("destroy", "--yes", "--skip-preview")


def read_events(path: Path, events: Callable[[dict[str, Any]], None]) -> None:
    """Hand each JSON object of an event log to `events`; a missing file or a torn line (the CLI
    killed mid-write) ends the reading, it never fails the up."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return
        if isinstance(event, dict):
            events(event)
