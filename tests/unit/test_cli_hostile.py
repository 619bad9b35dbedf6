"""Hostile command-line values: one `error:` line each, exit 2, before any work starts, and no
credential of an endpoint URL ever echoed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hostile_support import assert_refused, run_cli

from tierkit import outputs

SMOKE = ("smoke", "--endpoint", "http://127.0.0.1:9")  # nothing listens: any run would fail, not hang


@pytest.mark.parametrize("args, needles", [
    (("--endpoint", "http://host:0"), ["port 0"]),
    (("--endpoint", "http://host:99999"), ["is not a URL"]),
    (("--endpoint", "http://user:hunter2@host:8000"), ["carries credentials", "***@host"]),
    (("--endpoint", "http://:hunter2@host:8000/x y"), ["carries credentials"]),
    (("--endpoint", "http://host:8000/\nx"), ["control characters"]),
    (("--endpoint", "http://" + "h" * 5000), []),
    (("--timeout", "inf"), ["--timeout", "finite"]),
    (("--timeout", "nan"), ["--timeout"]),
    (("--timeout", "0"), ["--timeout", "greater than 0"]),
    (("--duration", "inf"), ["--duration", "finite"]),
    (("--request-rate", "nan"), ["--request-rate"]),
    (("--min-output-tok-s", "inf"), ["--min-output-tok-s", "finite"]),
    (("--concurrency", "0"), ["--concurrency"]),
    (("--requests", str(10**30)), ["--requests"]),
    (("--json", "/tmp"), ["--json: '/tmp' is a directory"]),
    (("--json", "/nonexistent/report.json"), ["is not a directory"]),
    (("--json", "/dev/null"), ["not a regular file"]),
    (("--api", "grpc"), ["--api"]),
])
def test_smoke_flags(args: tuple[str, ...], needles: list[str]) -> None:
    base = list(SMOKE)
    if args[0] == "--endpoint":
        base = ["smoke"]
    outcome = run_cli(*base, *args)
    assert_refused(outcome, *needles)
    assert "hunter2" not in outcome.stderr + outcome.stdout


def test_smoke_json_on_a_full_disk_fails_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.statvfs

    class Full:
        def __init__(self, path: str) -> None:
            self.f_frsize = real(path).f_frsize
            self.f_bavail = 3

    monkeypatch.setattr(outputs.os, "statvfs", Full)
    outcome = run_cli(*SMOKE, "--json", str(tmp_path / "r.json"))
    assert_refused(outcome, "--json: the file system of", "is full")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("args, needles", [
    (("--params-b", "inf"), ["--params-b"]),
    (("--params-b", "nan"), ["--params-b"]),
    (("--params-b", "1e400"), ["--params-b"]),
    (("--params-b", "0"), ["--params-b"]),
    (("--model", "x" * 10_000), ["--model: unknown model"]),
    (("--model", "llama-3.1-8b", "--users", str(10**40)), ["--users"]),
    (("--model", "llama-3.1-8b", "--gpus", "9"), ["--gpus"]),
    (("--model", "llama-3.1-8b", "--context", "-1"), ["--context"]),
])
def test_plan_flags(args: tuple[str, ...], needles: list[str]) -> None:
    assert_refused(run_cli("plan", *args), *needles)


HOST = {"name": "gpu-a", "address": "192.0.2.10", "port": 22, "user": "root", "key_path": "/k"}


@pytest.mark.parametrize("hosts, needles", [
    ([{**HOST, "address": "-oProxyCommand=touch /tmp/x"}], ["address", "not an IP address or DNS name"]),
    ([{**HOST, "address": "192.0.2.10\nserver x"}], ["address"]),
    ([{**HOST, "user": "root; id"}], ["user", "POSIX user name"]),
    ([{**HOST, "name": "a b"}], ["name"]),
    ([{**HOST, "port": True}], ["port"]),
    ("[" * 100_000 + "]" * 100_000, ["nests too deeply"]),
    ("{", ["is not JSON"]),
])
def test_hosts_files(hosts: object, needles: list[str], tmp_path: Path) -> None:
    f = tmp_path / "hosts.json"
    f.write_text(hosts if isinstance(hosts, str) else json.dumps(hosts))
    assert_refused(run_cli("inventory", "--stack", "single-gpu", "--hosts", str(f), "--json"), "--hosts", *needles)


@pytest.mark.parametrize("path, needle", [("/dev/zero", "not a regular file"), ("/", "is a directory")])
def test_hosts_file_that_is_no_file(path: str, needle: str) -> None:
    assert_refused(run_cli("inventory", "--stack", "single-gpu", "--hosts", path, "--json"), needle)


def test_inventory_output_that_is_a_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps([HOST]))
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert_refused(run_cli("inventory", "--stack", "single-gpu", "--hosts", str(hosts), "-o", str(not_a_dir)),
                   "cannot write the inventory there")


@pytest.mark.parametrize("args, needle", [
    (("topology", "parse", "/dev/zero"), "not a regular file"),
    (("topology", "parse", "/"), "is a directory"),
    (("topology", "parse", "/nonexistent"), "no such file"),
    (("wait-ssh", "--hosts", "-", "--known-hosts", "/tmp/kh", "--write", "/"), "--write: '/' is a directory"),
    (("wait-ssh", "--hosts", "-", "--known-hosts", "/tmp/kh", "--timeout", "inf"), "--timeout"),
])
def test_other_files_and_flags(args: tuple[str, ...], needle: str) -> None:
    assert_refused(run_cli(*args), needle)
