"""`tierkit up` / `tierkit down` as a user runs them, without the Pulumi CLI: the first line names
the engine, a cloud stack is refused before anything runs, a bad spec fails with one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.cli

ROOT = Path(__file__).resolve().parents[2]


def tierkit(cwd: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path if path is not None else "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", "from tierkit.cli import main; main()", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "stacks").mkdir()
    (tmp_path / "id").write_text("PRIVATE\n")
    (tmp_path / "id.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockKey tierkit\n")
    spec = yaml.safe_load((ROOT / "stacks" / "Pulumi.single-gpu.yaml").read_text())["config"]["tierkit:tier"]
    spec["provider"] = {"kind": "aws", "region": "us-east-1", "ssh_cidr": "203.0.113.0/24",
                        "public_key_path": str(tmp_path / "id.pub"), "private_key_path": str(tmp_path / "id")}
    spec["gpu"] = {"model": "l40s", "count": 1}
    spec["model"] = {"key": "llama-3.1-8b", "quantization": "bf16"}  # the lab's tiny model exists only there
    (tmp_path / "stacks" / "Pulumi.cloud.yaml").write_text(yaml.safe_dump({"config": {"tierkit:tier": spec}}))
    spec["gpu"]["count"] = 3
    (tmp_path / "stacks" / "Pulumi.bad.yaml").write_text(yaml.safe_dump({"config": {"tierkit:tier": spec}}))
    return tmp_path


def test_cloud_stack_is_refused_by_the_rehearsal(project: Path) -> None:
    proc = tierkit(project, "up", "--stack", "cloud")
    assert proc.returncode == 2
    assert proc.stdout.splitlines()[0].startswith("tierkit up: rehearsal (no Pulumi CLI)")
    assert proc.stderr.strip().splitlines() == [
        "error: resource aws:ec2/keyPair:KeyPair needs the Pulumi CLI; rehearsal runs lab and baremetal stacks"
    ]
    assert not (project / ".tierkit").exists(), "nothing ran, nothing recorded"


def test_a_refused_stack_is_one_failed_junit_case(project: Path) -> None:
    from xml.etree import ElementTree as ET

    import xmlschema

    proc = tierkit(project, "up", "--stack", "cloud", "--junit", str(project / "up.xml"))
    assert proc.returncode == 2
    xmlschema.XMLSchema(ROOT / "tests/support/junit.xsd").validate(project / "up.xml")
    (case,) = ET.parse(project / "up.xml").getroot().iter("testcase")
    assert case.attrib["name"] == "up"
    assert case.find("failure").attrib["message"].startswith("resource aws:ec2/keyPair:KeyPair needs the Pulumi CLI")  # type: ignore[union-attr]
    assert not (project / ".tierkit").exists()


def test_junit_into_a_missing_directory_fails_before_anything(project: Path) -> None:
    proc = tierkit(project, "up", "--stack", "cloud", "--junit", str(project / "no" / "up.xml"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: --junit: ")


def test_bad_spec_fails_before_anything(project: Path) -> None:
    proc = tierkit(project, "up", "--stack", "bad")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: tierkit:tier.gpu.count: single-gpu means exactly 1 GPU per server, got 3;")


def test_down_with_nothing_recorded(project: Path) -> None:
    proc = tierkit(project, "down", "--stack", "cloud")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("tierkit down: rehearsal (no Pulumi CLI): runs the deletes recorded in .tierkit/cloud/rehearsal.json")
    assert "nothing to delete" in lines[1]
