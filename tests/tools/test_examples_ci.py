"""examples/ci: the GitHub workflow passes actionlint, the GitLab file has the structure GitLab
requires, and every `tierkit` command the pipelines run names a real verb and real flags."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
TIERKIT = Path(sys.executable).parent / "tierkit"
# GitLab keywords that may stand at the top level beside jobs (docs.gitlab.com/ci/yaml/).
GITLAB_GLOBAL = {"stages", "default", "variables", "workflow", "include"}


def test_github_workflow_passes_actionlint() -> None:
    actionlint = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    done = subprocess.run([actionlint, "-no-color", str(CI / "github-workflow.yml")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_gitlab_file_structure() -> None:
    doc = yaml.safe_load((CI / "gitlab-ci.yml").read_text())
    stages = doc["stages"]
    jobs = {name: job for name, job in doc.items() if name not in GITLAB_GLOBAL}
    assert jobs, "no jobs"
    for name, job in jobs.items():
        assert job["stage"] in stages, f"{name}: stage {job['stage']!r} is not in stages"
        assert isinstance(job["script"], list) and all(isinstance(line, str) for line in job["script"]), name
        assert job["rules"] and all("if" in rule for rule in job["rules"]), name
    deploy = jobs["deploy-staging"]
    assert deploy["artifacts"]["reports"]["junit"] == "reports/*.xml" and deploy["artifacts"]["when"] == "always"
    merge_request_jobs = {n for n, j in jobs.items() if "merge_request_event" in j["rules"][0]["if"]}
    assert merge_request_jobs == {"validate", "plan-diff", "ansible-lint", "preview"}


def _tierkit_calls() -> list[list[str]]:
    calls = []
    for path in CI.iterdir():
        for line in path.read_text().splitlines():
            # A shell command: at the start of a line or a list item, after && || ; ( or `python -m`.
            match = re.search(r"(?:^\s*(?:-\s+)?|&&\s*|\|\|\s*|;\s*|\(\s*|-m\s+)tierkit ([a-z-]+)((?: +\S+)*)",
                              line.split(" #", 1)[0])
            if match:
                calls.append([match.group(1), *re.findall(r"--[a-z-]+", match.group(2))])
    return calls


@pytest.mark.parametrize("call", _tierkit_calls(), ids=lambda c: " ".join(c))
def test_every_tierkit_command_in_the_pipelines_exists(call: list[str]) -> None:
    verb, *flags = call
    done = subprocess.run([str(TIERKIT), verb, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"tierkit {verb}: {done.stderr}"
    for flag in flags:
        assert flag in done.stdout, f"tierkit {verb} has no {flag}"


def test_plan_diff_script_is_executable_and_strict() -> None:
    script = CI / "plan-diff.sh"
    assert script.stat().st_mode & 0o111
    assert "set -euo pipefail" in script.read_text()
    assert subprocess.run(["bash", "-n", str(script)], timeout=10).returncode == 0
