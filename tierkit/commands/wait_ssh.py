"""`tierkit wait-ssh`: wait until hosts answer SSH, and pin their host keys (the Ready step)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from tierkit.console import err_console, print_json
from tierkit.errors import TierkitError
from tierkit.hosts import read_hosts
from tierkit.outputs import check_output_file


def wait_ssh_command(
    hosts: Annotated[str, typer.Option("--hosts", help="Hosts JSON file (as `tierkit lab up --json` writes), or - for standard input.")],
    known_hosts: Annotated[Path, typer.Option("--known-hosts", help="The stack's known_hosts: verified keys are recorded here; hosts without a known_hosts of their own are pinned here on first contact.")],
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to keep retrying each host.", min=1, max=86400)] = 300,
    write: Annotated[Optional[Path], typer.Option("--write", help="Also write the hosts, now pinned to --known-hosts, to this JSON file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hosts, pinned to --known-hosts, as JSON on stdout.")] = False,
) -> None:
    """Wait until every host accepts an SSH login, with its host key verified and pinned.

    Retries connection errors and refused logins with backoff until --timeout. A host whose key
    does not match is never accepted: hosts that come with a known_hosts (the lab's) must match it;
    others must match their pin in --known-hosts, or are pinned there on first contact (a line
    names the key's fingerprint). Lab hosts are waited for inside their network namespace.
    Progress goes to stderr; exits 1 when a host does not answer in time.
    """
    if write is not None:
        check_output_file("--write", write)  # before the wait, not after it
    from tierkit.ssh_wait import pinned_hosts, wait_for_ssh  # paramiko: only when the verb runs

    wanted = read_hosts(hosts)
    if not wanted:
        raise TierkitError("--hosts: no hosts listed; nothing to wait for")
    results = wait_for_ssh(wanted, known_hosts.resolve(), timeout, lambda line: err_console.print(line, markup=False, soft_wrap=True))
    for r in results:
        err_console.print(f"ready {r.host.name} ({r.host.address}) in {r.seconds:.1f} s after {r.attempts} attempt(s); "
                          f"{r.key_type} {r.fingerprint} {r.how}", markup=False, soft_wrap=True)
    pinned = [h.model_dump() for h in pinned_hosts(results, known_hosts.resolve())]
    if write is not None:
        try:
            write.write_text(json.dumps(pinned, indent=2) + "\n")
        except OSError as exc:
            raise TierkitError(f"--write: cannot write {write} ({exc.strerror}); the hosts are pinned in --known-hosts") from None
    if as_json:
        print_json(pinned)


def register(app: typer.Typer) -> None:
    app.command("wait-ssh")(wait_ssh_command)
