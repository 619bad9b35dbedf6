"""`tierkit up`, `down` and `preview --diff` with a `pulumi` on PATH: a recording stand-in written
here, which logs every invocation (argv, stdin, working directory, environment), answers `stack
output --json` with canned outputs and deploys nothing. These tests check the invocations tierkit
builds; they are not a deploy, and the stand-in says so in its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.cli

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk-standin-0123456789"
HF_TOKEN = "hf_standin_abcdef"
STANDIN = '''#!{python}
import json, os, sys
argv = sys.argv[1:]
stdin = sys.stdin.read()
with open(os.environ["STANDIN_RECORD"], "a") as f:
    f.write(json.dumps({{"argv": argv, "stdin": stdin, "cwd": os.getcwd(), "env": dict(os.environ)}}) + "\\n")
if "--event-log" in argv:  # the engine's events, as `pulumi up` writes them: two commands, each pre then outputs
    urn = "urn:pulumi:cloud::tierkit::tierkit:fleet:Ready$command:local:Command::"
    with open(argv[argv.index("--event-log") + 1], "w") as f:
        for at, key, name in ((100, "resourcePreEvent", "wait-ssh"), (112.5, "resOutputsEvent", "wait-ssh"),
                              (113, "resourcePreEvent", "configure"), (413, "resOutputsEvent", "configure")):
            f.write(json.dumps({{"timestamp": at, key: {{"metadata": {{"type": "command:local:Command", "urn": urn + name}}}}}}) + "\\n")
if argv[:1] == [os.environ.get("STANDIN_FAIL")]:
    print("error: stand-in failure of " + argv[0])
    sys.exit(255)
if argv[:3] == ["stack", "output", "--json"]:
    print(json.dumps({{"endpoint": "http://standin-lb.example:8000", "plan": {{"fits": True}},
                      "notes": ["stand-in outputs"], "smoke": "[secret]"}}))
else:
    print("stand-in pulumi: recorded `" + " ".join(argv) + "`; nothing was deployed")
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's Pulumi.yaml with one aws stack (the failover stack's aws block)."""
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    lines = (ROOT / "stacks" / "Pulumi.failover.yaml").read_text().splitlines()
    start, end = lines.index("#   tierkit:tier:"), next(i for i, x in enumerate(lines) if x.startswith("# --- aws variant (end)"))
    spec = yaml.safe_load("\n".join(x[2:] for x in lines[start:end]))
    (root / "stacks" / "Pulumi.cloud.yaml").write_text(yaml.safe_dump({"config": spec}))
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE\n")
    (home / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockKey tierkit\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    standin = bin_dir / "pulumi"
    standin.write_text(STANDIN.format(python=sys.executable))
    standin.chmod(0o755)
    return root


def tierkit(project: Path, *args: str, secrets: bool = True, fail: str = "") -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    record = project.parent / "record.jsonl"
    record.unlink(missing_ok=True)
    env = {"PATH": f"{project.parent / 'bin'}:/usr/bin:/bin", "HOME": str(project.parent / "home"),
           "STANDIN_RECORD": str(record), "STANDIN_FAIL": fail, "PULUMI_CONFIG_PASSPHRASE": "standin-passphrase",
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    if secrets:
        env |= {"TIERKIT_API_KEY": API_KEY, "HF_TOKEN": HF_TOKEN}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", "from tierkit.cli import main; main()", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=180)
    calls = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    return proc, calls


def assert_no_secret_leaks(proc: subprocess.CompletedProcess[str], calls: list[dict[str, Any]]) -> None:
    for secret in (API_KEY, HF_TOKEN):
        assert secret not in proc.stdout + proc.stderr, "a secret in tierkit's output"
        for call in calls:
            assert not any(secret in a for a in call["argv"]), f"a secret on the command line of {call['argv']}"
            assert not any(secret in v for v in call["env"].values()), f"a secret in the environment of {call['argv']}"


def test_up_builds_the_exact_invocations(project: Path) -> None:
    proc, calls = tierkit(project, "up", "--stack", "cloud", "--json", "--junit", str(project / "up.xml"))
    assert proc.returncode == 0, proc.stderr
    up = calls[3]["argv"]
    assert up[:4] == ["up", "--yes", "--skip-preview", "--event-log"] and up[-2:] == ["--stack", "cloud"]
    assert [c["argv"] for c in calls] == [
        ["stack", "select", "--create", "--stack", "cloud"],
        ["config", "set", "--secret", "tierkit:apiKey", "--stack", "cloud"],
        ["config", "set", "--secret", "tierkit:hfToken", "--stack", "cloud"],
        ["up", "--yes", "--skip-preview", "--event-log", up[4], "--stack", "cloud"],
        ["stack", "output", "--json", "--stack", "cloud"],
    ]
    assert not Path(up[4]).exists(), "the event log is read, then removed"
    # The engine's events are the up's step times, in the history and the JUnit report.
    [run] = [json.loads(line) for line in (project / ".tierkit" / "cloud" / "history.jsonl").read_text().splitlines()]
    assert run["engine"] == "pulumi" and [(s["name"], s["seconds"]) for s in run["steps"]] == [
        ("readiness", 12.5), ("configure", 300.0)]
    assert 'name="configure"' in (project / "up.xml").read_text()
    assert [c["stdin"] for c in calls] == ["", API_KEY, HF_TOKEN, "", ""], "secrets on stdin, nothing else"
    assert {c["cwd"] for c in calls} == {str(project)}, "the project root, whose Pulumi.yaml names stackConfigDir"
    assert yaml.safe_load((project / "Pulumi.yaml").read_text())["stackConfigDir"] == "stacks"
    assert all(c["env"]["PULUMI_CONFIG_PASSPHRASE"] == "standin-passphrase" for c in calls)
    assert_no_secret_leaks(proc, calls)
    assert proc.stderr.splitlines()[0].startswith(f"tierkit up: the Pulumi CLI at {project.parent / 'bin' / 'pulumi'}")
    assert f"stand-in pulumi: recorded `up --yes --skip-preview --event-log {up[4]} --stack cloud`; nothing was deployed" in proc.stderr
    assert "rehearsal" not in proc.stderr
    out = json.loads(proc.stdout)
    assert out["engine"] == "pulumi"
    assert out["outputs"] == {"endpoint": "http://standin-lb.example:8000", "plan": {"fits": True},
                              "notes": ["stand-in outputs"], "smoke": "[secret]"}


def test_up_without_secrets_sets_none_and_a_failure_is_one_line(project: Path) -> None:
    proc, calls = tierkit(project, "up", "--stack", "cloud", secrets=False, fail="up")
    assert proc.returncode == 1
    assert [c["argv"][0] for c in calls] == ["stack", "up"], "no config set without the variables; no outputs after a failure"
    assert "tierkit:apiKey: $TIERKIT_API_KEY not set" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: pulumi up: exited 255 (error: stand-in failure of up); see the output above")


def test_up_refresh_asks_pulumi_to_refresh(project: Path) -> None:
    proc, calls = tierkit(project, "up", "--stack", "cloud", "--refresh")
    assert proc.returncode == 0, proc.stderr
    assert calls[3]["argv"][:4] == ["up", "--yes", "--skip-preview", "--refresh"]


def test_down_destroys(project: Path) -> None:
    proc, calls = tierkit(project, "down", "--stack", "cloud")
    assert proc.returncode == 0, proc.stderr
    assert [c["argv"] for c in calls] == [["stack", "select", "--create", "--stack", "cloud"],
                                          ["destroy", "--yes", "--skip-preview", "--stack", "cloud"]]


def test_preview_lists_resources_then_diffs(project: Path) -> None:
    proc, calls = tierkit(project, "preview", "--stack", "cloud", "--json", "--diff")
    assert proc.returncode == 0, proc.stderr
    assert [c["argv"] for c in calls][-1] == ["preview", "--diff", "--stack", "cloud"]
    assert_no_secret_leaks(proc, calls)
    out = json.loads(proc.stdout)
    assert out["engine"] == "mocks" and out["provider"] == "aws" and out["plan"]["servers"] == 2
    servers = [r for r in out["resources"] if r["type"] == "aws:ec2/instance:Instance"]
    assert [(r["name"], r["inputs"]["instanceType"], r["ignore_changes"]) for r in servers] == [
        ("server1", "g6e.xlarge", ["ami"]), ("server2", "g6e.xlarge", ["ami"])]
    assert all(r["inputs"]["metadataOptions"]["httpTokens"] == "required" for r in servers)
    configure = next(r for r in out["resources"] if r["name"] == "configure" and r["custom"])
    assert configure["inputs"]["environment"] == "[secret]"
    assert "nothing ran and nothing was created" in out["note"]


def test_preview_table_without_the_cli(project: Path) -> None:
    (project.parent / "bin" / "pulumi").unlink()
    proc, calls = tierkit(project, "preview", "--stack", "cloud")
    assert proc.returncode == 0, proc.stderr
    assert calls == []
    assert proc.stdout.startswith("ok: failover on aws: 2x server, 1x l40s, llama-3.1-8b bf16")
    assert "aws:lb/targetGroup:TargetGroup" in proc.stdout and "note: from Pulumi's mock runtime" in proc.stdout
    proc, _ = tierkit(project, "preview", "--stack", "cloud", "--diff")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --diff: pulumi is not on PATH; install the Pulumi CLI, or drop --diff"
